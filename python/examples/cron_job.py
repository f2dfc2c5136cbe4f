"""A cron-style script (run it from crontab or a systemd timer): make sure the daily
automations exist, queue a one-off shell job on the pool, and write today's digest into
memory. Safe to run again and again.

    python python/examples/cron_job.py

The automations fire once the daemon runs (`zocalo daemon start`): its scheduler and local
worker take the jobs from the same database.
"""

import datetime
import warnings

import zocalo

AUTOMATIONS = {
    "morning-brief": dict(rrule="FREQ=DAILY", start="2026-01-01T08:00:00", tz="Europe/Berlin",
                          ask="Give me a short morning brief."),
    "weekly-cleanup": dict(rrule="FREQ=WEEKLY;BYDAY=SU", start="2026-01-04T03:00:00", tz="UTC",
                           shell="find /tmp -name 'zocalo-*' -mtime +7 -delete"),
}


def main():
    z = zocalo.Zocalo()
    existing = {a["name"] for a in z.schedule.list()}
    with warnings.catch_warnings():
        # "no worker is running" is expected here: the daemon runs the jobs later.
        warnings.simplefilter("ignore", UserWarning)
        for name, spec in AUTOMATIONS.items():
            if name not in existing:
                added = z.schedule.add(name, **spec)
                print(f"added {name}: next run {added['next_run_at']}")
    today = datetime.date.today().isoformat()
    (job,) = z.pool.submit("shell", {"cmd": ["echo", f"digest {today}"]}, key=f"digest-{today}")
    answer = z.ask(f"Write a one-line digest for {today}.", conv_key="cron:digest")
    z.memory.add(answer["text"], scope="agent:cron", meta={"date": today, "job": job})
    print(f"digest {today}: job {job}, {len(z.schedule.list())} automations")


if __name__ == "__main__":
    main()
