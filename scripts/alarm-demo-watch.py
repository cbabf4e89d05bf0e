"""The watching half of scripts/alarm-demo.sh: waits for the alarms that
`sshwatch bootstrap` created to enter ALARM, reads the SNS notifications an SQS
queue subscribed to the alarms' topic received, prints them as an operator would
read them, waits for the alarms to leave ALARM once the attack is over, and
checks all of it.

It runs in LocalStack's venv (its boto3) against the endpoint, region and
credentials in the AWS_* environment variables, which the shell script sets.

    alarm-demo-watch.py --plan PLAN.json --queue-url URL --heartbeat NAME
                        --attack-at EPOCH [--check]

PLAN.json is `sshwatch bootstrap --dry-run` output: its PutMetricAlarm calls say
which alarms exist and with which parameters. Every alarm except the heartbeat
alarm is expected to fire. It exits 1 when an expectation is not met (each
wait has a time limit); with --check it prints every check as PASS or FAIL and
a closing tally.
"""

import argparse
import datetime as dt
import json
import sys
import time

import boto3

# LocalStack evaluates an alarm when it is created and then every
# Period x EvaluationPeriods, over the last EvaluationPeriods + 2 periods
# ending at that instant. A minute's counts are published a little after the
# minute ends, so the alarm sees them within a minute and a bit of the attack,
# and stops seeing them three periods after the attack's minute.
ALARM_WITHIN = 200  # seconds after the attack
CLEAR_WITHIN = 330  # seconds after the attack
POLL = 2.0


def now_utc():
    return dt.datetime.now(dt.timezone.utc)


def hms(t):
    return t.astimezone(dt.timezone.utc).strftime("%H:%M:%S")


def say(text=""):
    print(text, flush=True)


def trigger_text(t):
    return (
        f"{t.get('Statistic', '?')} of {t.get('Namespace')}/{t.get('MetricName')} over {t.get('Period')} s, "
        f"{t.get('ComparisonOperator')} {t.get('Threshold')} for {t.get('EvaluationPeriods')} evaluation period(s), "
        f"missing data: {t.get('TreatMissingData')}"
    )


def reason_data_text(raw):
    """The datapoints the evaluation compared, from the alarm's StateReasonData."""
    try:
        d = json.loads(raw or "{}")
    except ValueError:
        return raw
    if not d:
        return "(none)"
    points = d.get("recentDatapoints")
    return f"datapoints {points} ({d.get('statistic', '?')} per {d.get('period')} s) against threshold {d.get('threshold')}"


class Watch:
    def __init__(self, args):
        self.args = args
        self.cw = boto3.client("cloudwatch")
        self.sqs = boto3.client("sqs")
        plan = json.load(open(args.plan))
        puts = [c["parameters"] for c in plan["calls"] if c["operation"] == "PutMetricAlarm"]
        self.config = {p["AlarmName"]: p for p in puts}
        self.names = [n for n in self.config if n != args.heartbeat]
        self.heartbeat = args.heartbeat if args.heartbeat in self.config else None
        self.state = {}  # alarm name -> last DescribeAlarms entry seen
        self.seen_alarm = {}  # alarm name -> DescribeAlarms entry while in ALARM
        self.cleared = {}  # alarm name -> DescribeAlarms entry after leaving ALARM
        self.messages = []  # (received at, SNS envelope, alarm message)
        self.passed = 0
        self.failed = 0

    # -- reading ---------------------------------------------------------------

    def poll_alarms(self):
        every = list(self.config)
        for a in self.cw.describe_alarms(AlarmNames=every)["MetricAlarms"]:
            name = a["AlarmName"]
            before = self.state.get(name)
            self.state[name] = a
            if before is not None and before["StateValue"] != a["StateValue"]:
                say(
                    f"  {hms(now_utc())}  {name}: {before['StateValue']} -> {a['StateValue']} "
                    f"({a['StateReason']})"
                )
            if a["StateValue"] == "ALARM" and name not in self.seen_alarm:
                self.seen_alarm[name] = a
            if name in self.seen_alarm and a["StateValue"] != "ALARM" and name not in self.cleared:
                self.cleared[name] = a

    def poll_queue(self, wait):
        got = self.sqs.receive_message(
            QueueUrl=self.args.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait
        ).get("Messages", [])
        for m in got:
            envelope = json.loads(m["Body"])
            try:
                alarm = json.loads(envelope.get("Message", ""))
            except ValueError:
                alarm = {}
            self.messages.append((now_utc(), envelope, alarm))
            say(f"  {hms(now_utc())}  queue: received {envelope.get('Subject')!r}")
            self.sqs.delete_message(QueueUrl=self.args.queue_url, ReceiptHandle=m["ReceiptHandle"])

    def notified(self, name):
        return [
            (at, env, msg)
            for at, env, msg in self.messages
            if msg.get("AlarmName") == name and msg.get("NewStateValue") == "ALARM"
        ]

    def wait(self, what, done, deadline):
        while not done():
            if time.time() > deadline:
                say(f"  {hms(now_utc())}  gave up waiting for {what}")
                return False
            self.poll_alarms()
            self.poll_queue(wait=int(POLL))
        return True

    # -- printing --------------------------------------------------------------

    def print_notification(self, at, envelope, msg, full):
        name = msg.get("AlarmName")
        say(f"-- delivered to the queue at {hms(at)} UTC (an email subscription would get the same) --")
        say(f"Subject:          {envelope.get('Subject')}")
        say(f"AlarmName:        {name}")
        say(f"OldStateValue:    {msg.get('OldStateValue')}")
        say(f"NewStateValue:    {msg.get('NewStateValue')}")
        say(f"NewStateReason:   {msg.get('NewStateReason')}")
        say(f"StateChangeTime:  {msg.get('StateChangeTime')}")
        say(f"Trigger:          {trigger_text(msg.get('Trigger', {}))}")
        seen = self.seen_alarm.get(name)
        if seen is not None:
            say(f"evaluated:        {reason_data_text(seen.get('StateReasonData'))}")
        if full:
            say("the message as the topic published it (the SNS envelope's `Message`):")
            for line in json.dumps(msg, indent=2).splitlines():
                say(f"  {line}")
        say()

    # -- checking --------------------------------------------------------------

    def check(self, ok, text):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        if self.args.check or not ok:
            say(f"{'PASS' if ok else 'FAIL'}: {text}")

    def check_all(self):
        for name in self.names:
            want = self.config[name]
            got = self.notified(name)
            self.check(bool(got), f"{name}: an SNS notification of its ALARM state reached the queue")
            if got:
                _, env, msg = got[0]
                trig = msg.get("Trigger", {})
                region = self.cw.meta.region_name
                self.check(
                    env.get("Subject") == f'ALARM: "{name}" in {region}',
                    f"{name}: subject is {env.get('Subject')!r}",
                )
                self.check(msg.get("NewStateValue") == "ALARM", f"{name}: NewStateValue is ALARM")
                self.check(
                    msg.get("OldStateValue") in ("OK", "INSUFFICIENT_DATA"),
                    f"{name}: OldStateValue is {msg.get('OldStateValue')} (it entered ALARM)",
                )
                self.check(
                    str(msg.get("NewStateReason", "")).startswith("Threshold Crossed"),
                    f"{name}: NewStateReason is {msg.get('NewStateReason')!r}",
                )
                self.check(
                    trig.get("MetricName") == want["MetricName"]
                    and trig.get("Namespace") == want["Namespace"]
                    and trig.get("ComparisonOperator") == want["ComparisonOperator"]
                    and float(trig.get("Threshold", "nan")) == float(want["Threshold"]),
                    f"{name}: Trigger is {want['Namespace']}/{want['MetricName']} "
                    f"{want['ComparisonOperator']} {float(want['Threshold'])}",
                )
            seen = self.seen_alarm.get(name)
            data = json.loads((seen or {}).get("StateReasonData") or "{}")
            breaching = [
                v for v in data.get("recentDatapoints", []) if v > float(want["Threshold"])
            ]
            self.check(
                data.get("threshold") == float(want["Threshold"]) and bool(breaching),
                f"{name}: the evaluation that raised it compared datapoints {data.get('recentDatapoints')} "
                f"with threshold {data.get('threshold')}",
            )
            cleared = self.cleared.get(name)
            self.check(
                cleared is not None and cleared["StateValue"] in ("OK", "INSUFFICIENT_DATA"),
                f"{name}: left ALARM after the attack (now {self.state.get(name, {}).get('StateValue')})",
            )

    # -- the run ---------------------------------------------------------------

    def run(self):
        attack = self.args.attack_at
        self.poll_alarms()
        every = sorted({self.config[n]["Period"] * self.config[n]["EvaluationPeriods"] for n in self.names})
        say(
            f"== waiting for {', '.join(self.names)} to enter ALARM (LocalStack evaluates each every "
            f"{' or '.join(map(str, every))} s; sshwatch publishes the attack's minute when it ends) =="
        )
        for name in self.names:
            say(f"  {hms(now_utc())}  {name}: {self.state[name]['StateValue']} ({self.state[name]['StateReason']})")
        self.wait(
            "the alarms to enter ALARM and their notifications",
            lambda: all(self.notified(n) and n in self.seen_alarm for n in self.names),
            attack + ALARM_WITHIN,
        )
        say()
        say("== the notifications ==")
        first = True
        for name in self.names:
            for at, env, msg in self.notified(name)[:1]:
                self.print_notification(at, env, msg, full=first)
                first = False
        say(
            "(CloudWatch's own NewStateReason goes on to name the datapoints and the threshold; LocalStack's "
            "stops at \"Threshold Crossed\", so `evaluated:` shows them from the alarm's StateReasonData.)"
        )
        say()

        say(
            "== the attack is over; waiting for the alarms to leave ALARM, once its minute is older "
            "than the range LocalStack evaluates (EvaluationPeriods + 2 periods) =="
        )
        self.wait(
            "the alarms to leave ALARM",
            lambda: all(n in self.cleared for n in self.names if n in self.seen_alarm),
            attack + CLEAR_WITHIN,
        )
        self.poll_queue(wait=0)
        say()
        say("== after the attack ==")
        for name in self.names:
            a = self.cleared.get(name) or self.state.get(name, {})
            say(
                f"{name}: {a.get('StateValue')} since {hms(a['StateUpdatedTimestamp']) if 'StateUpdatedTimestamp' in a else '?'} UTC "
                f"({a.get('StateReason')}; {reason_data_text(a.get('StateReasonData'))}); "
                f"no notification: the alarm has no OK action"
            )
        if self.heartbeat:
            hb = self.state.get(self.heartbeat, {})
            every = self.config[self.heartbeat]["Period"] * self.config[self.heartbeat]["EvaluationPeriods"]
            say(
                f"{self.heartbeat}: {hb.get('StateValue')} ({hb.get('StateReason')}) "
                f"It entered ALARM when bootstrap created it: no heartbeat had been published yet, and missing "
                f"data counts as breaching. It returns to OK at its first evaluation with a heartbeat in range: "
                f"LocalStack evaluates it every {every} s (Period x EvaluationPeriods), after this demo ends."
            )
        say()
        say("== alarm history (DescribeAlarmHistory) ==")
        for name in self.config:
            items = self.cw.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")
            for h in sorted(items["AlarmHistoryItems"], key=lambda h: h["Timestamp"]):
                say(f"{name}: {h['HistorySummary']}")
        say()
        self.check_all()
        if self.args.check:
            say(f"alarm-demo: {self.passed} passed, {self.failed} failed")
        elif self.failed == 0:
            say(
                f"Every alarm entered ALARM, its notification arrived, and it left ALARM after the attack "
                f"({self.passed} checks)."
            )
        return 0 if self.failed == 0 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plan", required=True)
    p.add_argument("--queue-url", required=True)
    p.add_argument("--heartbeat", default="")
    p.add_argument("--attack-at", type=float, required=True)
    p.add_argument("--check", action="store_true")
    return Watch(p.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
