"""Console pages of the media workers (issue 7): transcoding templates and
ABR groups, recording and snapshot settings and running jobs on one page;
recorded files with their downloads; snapshot images. Each view validates
with a form, calls one service (the operator's own domains only) and
renders or redirects with a message."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from domains import services as domain_services
from livecenter.lib.pages import add_service_errors, paginate, read_filter, service_rows
from streams.forms import StreamFilterForm

from . import services as media_services
from .api import recording_response, snapshot_response
from .forms import DeleteForm, GroupForm, RecordForm, SnapshotForm, TemplateForm
from .models import ANY_APP

FORMS = {"template": TemplateForm, "group": GroupForm, "record": RecordForm, "snapshot": SnapshotForm}


def _save(user, kind: str, data: dict) -> str:
    domain, app = data["domain"], data["app"]
    if kind == "template":
        template = media_services.add_template(
            user, domain, app, data["template_id"], width=data["width"] or 0, height=data["height"] or 0,
            short_side=data["short_side"] or 0, video_bitrate_kbps=data["video_bitrate_kbps"] or 0,
            fps=data["fps"] or 0, gop_seconds=data["gop_seconds"] or 0, profile=data["profile"],
            lazy=not data["always"],
        )  # fmt: skip
        return f"Added template {template.template_id}: play {{stream}}_{template.template_id}."
    if kind == "group":
        ids = [t.strip() for t in data["template_ids"].split(",")]
        group = media_services.add_group(user, domain, app, data["group_id"], ids)
        return f"Added group {group.group_id}: play {{stream}}_{group.group_id}.m3u8."
    streams = f"every app of {domain}" if app == ANY_APP else f"{domain}/{app}"
    if kind == "record":
        config = media_services.set_record_config(user, domain, app, cycle_seconds=data["cycle_seconds"],
                                                  on_reconnect=data["on_reconnect"], format=data["format"])  # fmt: skip
        what = f"Recording set for {streams}: {config.format.upper()}, a new file every {config.cycle_seconds} s"
    else:
        config = media_services.set_snapshot_config(user, domain, app, interval_seconds=data["interval_seconds"])
        what = f"Snapshots set for {streams}: one every {config.interval_seconds} s"
    return f"{what}; {_applied(config.live_streams_started)}."


def _applied(live_streams_started: int) -> str:
    """When a recording or snapshot setting takes effect (issue 19, finding 6)."""
    if not live_streams_started:
        return "no stream of it is live now; each starts when it is published"
    streams = "stream" if live_streams_started == 1 else "streams"
    return (
        f"started now on {live_streams_started} live {streams} (a job already running keeps the settings it"
        " started with until its stream is published again) and on every stream published from now on"
    )


@login_required
def media(request):
    """GET shows the settings and running jobs; POST (?form=template|group|
    record|snapshot) adds or sets one."""
    domains = domain_services.ingest_domains(request.user)
    kind = request.GET.get("form") if request.method == "POST" else None
    forms = {name: cls(prefix=name, domains=domains) for name, cls in FORMS.items()}
    if kind in FORMS:
        form = forms[kind] = FORMS[kind](request.POST, prefix=kind, domains=domains)
        if form.is_valid():
            try:
                message = _save(request.user, kind, form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, message)
                return redirect("streams:media")
    user = request.user
    context = {
        "forms": forms,
        "templates": media_services.list_templates(user),
        "groups": media_services.list_groups(user),
        "records": media_services.list_record_configs(user),
        "snapshot_configs": media_services.list_snapshot_configs(user),
        "jobs": media_services.list_jobs(user),
        "has_domains": domains.exists(),
        "tab": "media",
    }
    return render(request, "streams/media.html", context, status=400 if kind and kind in FORMS else 200)


@login_required
@require_POST
def media_delete(request):
    form = DeleteForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        what, domain, app, name = data["what"], data["domain"], data["app"], data["name"]
        delete = {
            "template": lambda: media_services.delete_template(request.user, domain, app, name),
            "group": lambda: media_services.delete_group(request.user, domain, app, name),
            "record": lambda: media_services.delete_record_config(request.user, domain, app),
            "snapshot": lambda: media_services.delete_snapshot_config(request.user, domain, app),
        }[what]
        try:
            delete()
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            which = f"{what} {name}" if name else f"{what} setting"
            messages.success(request, f"Deleted the {which} of {domain}/{app}.")
    return redirect("streams:media")


@login_required
def recordings(request):
    domains = domain_services.ingest_domains(request.user)
    form, data = read_filter(request, StreamFilterForm, domains=domains)
    rows = []
    if data is not None:
        rows = service_rows(form, media_services.list_recordings, request.user, data.get("domain") or None,
                            data.get("app") or None, data.get("stream") or None)  # fmt: skip
    page, query = paginate(request, rows)
    context = {"form": form, "page": page, "query": query, "has_domains": domains.exists(), "tab": "recordings",
               "failed_jobs": media_services.failed_recording_jobs(request.user)}  # fmt: skip
    return render(request, "streams/recordings.html", context)


def _file(respond, user, pk: int):
    from rest_framework.exceptions import NotFound

    try:
        return respond(user, pk)
    except NotFound as exc:
        raise Http404(str(exc.detail)) from None


@login_required
def recording_download(request, recording_id: int, name: str | None = None):
    """The MP4 or HLS VOD playlist; with `name`, one of the playlist's segments."""
    return _file(lambda user, pk: recording_response(user, pk, name), request.user, recording_id)


@login_required
def snapshot_image(request, snapshot_id: int):
    return _file(snapshot_response, request.user, snapshot_id)
