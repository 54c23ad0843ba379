"""The worker's log keeps media jobs and failures, not the beat's heartbeat."""

import logging

from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

from livecenter.celery import _QuietHousekeeping


def record(message: str, name: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("celery.app.trace", level, __file__, 1, message, ({"name": name, "id": "x"},), None)


def test_periodic_jobs_received_and_succeeded_lines_are_dropped():
    quiet = _QuietHousekeeping()
    assert not quiet.filter(record(LOG_RECEIVED, "monitoring.evaluate_alarms"))
    assert not quiet.filter(record(LOG_SUCCESS, "streams.recover_media_jobs"))


def test_media_jobs_and_failures_are_kept():
    quiet = _QuietHousekeeping()
    assert quiet.filter(record(LOG_SUCCESS, "mediajobs.run_job"))
    assert quiet.filter(record(LOG_SUCCESS, "monitoring.evaluate_alarms", logging.ERROR))
    assert quiet.filter(logging.LogRecord("celery", logging.INFO, __file__, 1, "plain %s", ("text",), None))


def test_the_beats_sending_lines_for_periodic_jobs_are_dropped():
    quiet = _QuietHousekeeping()
    sending = logging.LogRecord(
        "celery.beat", logging.INFO, __file__, 1, "Scheduler: Sending due task %s (%s)",
        ("monitoring.evaluate-alarms", "monitoring.evaluate_alarms"), None,
    )  # fmt: skip
    assert not quiet.filter(sending)
