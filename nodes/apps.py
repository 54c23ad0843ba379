from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "nodes"
    verbose_name = "Media nodes"

    def ready(self) -> None:
        # The apps below this one announce; the node side acts (DESIGN.md: the
        # node's Django side may import them, they never import it).
        from django.db.models.signals import post_delete, post_save

        from callbacks.models import CallbackConfig
        from callbacks.sink import CallbackSink
        from domains import services as domain_services
        from domains.models import Domain, DomainCertificate
        from mediajobs import signals as media_signals
        from monitoring import troubleshoot
        from monitoring.sink import MonitoringSink
        from streams import signals

        from . import bridge, receivers, services

        signals.stream_forbidden.connect(receivers.kick_forbidden_publisher, dispatch_uid="nodes.kick")
        signals.stream_resumed.connect(receivers.forget_resumed_stream, dispatch_uid="nodes.forget")
        media_signals.capture_settings_set.connect(
            receivers.start_capture_on_live_streams, dispatch_uid="nodes.capture"
        )
        for model in (Domain, DomainCertificate, CallbackConfig):
            for signal in (post_save, post_delete):
                uid = f"nodes.forget.{model.__name__}"
                signal.connect(receivers.forget_changed_domain, sender=model, dispatch_uid=uid)
        # The engine's events reach monitoring through the node's event sink.
        bridge.add_event_listener(MonitoringSink())
        # And the operator's callback URL (callbacks/sink.py), which only queues
        # deliveries: once the publish is written, so none is lost to an outage.
        bridge.add_event_listener(CallbackSink(), once_written=True)
        # The troubleshooting tool reads an edge's relay in its heartbeat.
        troubleshoot.edge_relay = services.edge_relay
        # The URL generator's notes on the TLS ports the nodes serve.
        domain_services.tls_reach_notes = services.tls_reach_notes
