"""Getting messages out: the outbox (outbox.py) and the channel kinds it sends to,
apprise URLs (apprise_target.py) and Alertmanager clusters (alertmanager.py), with
what they share (channel.py). Nothing here is imported on a hook's quiet path.
"""
