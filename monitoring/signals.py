"""What monitoring tells the apps above it (the callbacks app connects these
in its AppConfig.ready(), as it does mediajobs/signals.py's). Sent with
`send_robust` once the alarm's row says so: a listener's failure is logged
and never undoes or repeats the alarm."""

from django.dispatch import Signal

# An alarm opened (its condition held for the rule's duration). Arguments: alarm (an AlarmEvent).
alarm_opened = Signal()

# An alarm closed (its condition cleared, its stream stopped, or its rule changed). Arguments: alarm.
alarm_closed = Signal()
