"""The notifier consumes walk-planner's stream (issue 10): MailRequested
becomes one e-mail (with its .ics attachment intact) through the delivery
worker, FindingTaskRequested becomes a task routed like a report whose id
is the finding id, with the named unit winning over the routing rules.

walk-planner is stood in for by trygg-testpub publishing as "walk-planner"
through a real outbox relay: the test writes events into its outbox.
"""
import email
import email.policy
import time

from harness import Service, check, free_port, fresh_schemas, psql, psql1, role_url, wait_for
from intake_support import _varint, pb_string, pb_varint
from notifier_support import Smtp, Stack

WP = "testpub"

ICS = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Trygg//walk-planner//SV\r\n"
       "METHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:walk-1@trygg\r\nDTSTART:20261203T170000Z\r\n"
       "SUMMARY:Trygghetsvandring Sergels torg – kväll\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
       ).encode("utf-8") + bytes(range(0, 8))  # and a few odd bytes: must survive too


def pb_bytes(field, b):
    return _varint(field << 3 | 2) + _varint(len(b)) + b


def start_walk_planner():
    fresh_schemas(WP)
    pub = Service("walk-planner", "trygg-testpub", {
        "DATABASE_URL": role_url(WP), "TRYGG_HTTP_PORT": free_port(),
        "TRYGG_PUBLISHER": "walk-planner",
        "TRYGG_BUS_PUB_URL": "tcp://127.0.0.1:%d" % free_port(),
        "TRYGG_BUS_REP_URL": "tcp://127.0.0.1:%d" % free_port()})
    pub.start()
    return pub


def publish(event_type, payload):
    psql("INSERT INTO %s.outbox (event_type, payload) VALUES ('trygg.walks.%s', '\\x%s'::bytea)"
         % (WP, event_type, payload.hex()))


def stack_with_walk_planner(smtp=None):
    wp = start_walk_planner()
    st = Stack(smtp=smtp, notifier_env={
        "TRYGG_BUS_WALK_PLANNER_SUB_URL": wp.env["TRYGG_BUS_PUB_URL"],
        "TRYGG_BUS_WALK_PLANNER_REQ_URL": wp.env["TRYGG_BUS_REP_URL"]})
    return st, wp


def mail(mail_id, to="ann@example.se"):
    return (pb_string(1, mail_id) + pb_string(2, to) + pb_string(3, "Ann Åberg")
            + pb_string(4, "Inbjudan: trygghetsvandring vid Sergels torg")
            + pb_string(5, "Välkommen!\nVi ses vid trappan.\n")
            + pb_string(6, "invite.ics")
            + pb_string(7, "text/calendar; method=REQUEST; charset=UTF-8")
            + pb_bytes(8, ICS) + pb_string(9, "invitation") + pb_string(10, "walk-1"))


def test_mail_requested_with_ics_once():
    smtp = Smtp()
    try:
        st, wp = stack_with_walk_planner(smtp)
        publish("MailRequested", mail("mail-1"))
        publish("MailRequested", mail("mail-1"))  # the same mail again: sent once
        msgs = wait_for(lambda: [m for m in smtp.messages if "ann@example.se" in m[1]], 20,
                        "the invitation e-mail")
        check(msgs[0][1] == ["ann@example.se"], "recipients %r" % (msgs[0][1],))
        msg = email.message_from_string(msgs[0][2], policy=email.policy.default)
        check(msg["Subject"] == "Inbjudan: trygghetsvandring vid Sergels torg", "subject %r" % msg["Subject"])
        check("Ann Åberg" in str(msg["To"]), "to %r" % msg["To"])
        check(msg.get_content_type() == "multipart/mixed", "type %r" % msg.get_content_type())
        parts = list(msg.iter_parts())
        check(len(parts) == 2, "parts %d" % len(parts))
        check(parts[0].get_content() == "Välkommen!\nVi ses vid trappan.\n",
              "text %r" % parts[0].get_content())
        cal = parts[1]
        check(cal.get_content_type() == "text/calendar", "attachment type %r" % cal.get_content_type())
        check(cal.get_param("method") == "REQUEST", "method parameter lost: %r" % cal["Content-Type"])
        check(cal.get_filename() == "invite.ics", "filename %r" % cal.get_filename())
        check(cal.get_payload(decode=True) == ICS, "the .ics differs from the attachment bytes")
        # Sent once: the second MailRequested with the same mail_id is a no-op.
        wait_for(lambda: psql1("SELECT last_seq FROM notifier.inbox_cursor"
                               " WHERE publisher = 'walk-planner'") == "2", 10, "both applied")
        time.sleep(1.5)
        check(len([m for m in smtp.messages if "ann@example.se" in m[1]]) == 1,
              "mail-1 sent %d times" % len(smtp.messages))
        check(psql1("SELECT count(*) FROM notifier.deliveries WHERE kind = 'mail'"
                    " AND status = 'delivered'") == "1", "delivery row")
    finally:
        smtp.stop()


def test_mail_requested_retries_then_dead_letter():
    """No SMTP relay answering: the same retries and dead letter as task e-mail."""
    port = free_port()  # nothing listens here
    st, wp = stack_with_walk_planner()
    st.notifier.stop()
    st.notifier.env.update({"TRYGG_SMTP_URL": "smtp://127.0.0.1:%s" % port,
                            "TRYGG_MAX_ATTEMPTS": "3"})
    st.notifier.start()
    publish("MailRequested", mail("mail-dead"))
    row = wait_for(lambda: psql("SELECT status, attempts FROM notifier.deliveries"
                                " WHERE mail_id = 'mail-dead' AND status = 'dead'"), 30,
                   "the mail to become a dead letter")
    check(row[0][1] == "3", "attempts %r" % (row,))


def finding(fid, unit="", category="litter", deadline_us=0):
    return (pb_string(1, fid) + pb_string(2, "walk-1") + pb_string(3, category)
            + pb_string(4, "sergels-torg") + pb_varint(5, 1)
            + _varint(6 << 3 | 1) + __import__("struct").pack("<d", 59.3324)
            + _varint(7 << 3 | 1) + __import__("struct").pack("<d", 18.0637)
            + pb_varint(8, 3) + pb_string(9, "Trasig belysning i trappan")
            + (pb_string(10, unit) if unit else b"")
            + (pb_varint(11, deadline_us) if deadline_us else b"")
            + pb_varint(12, int(time.time() * 1e6)))


def test_finding_task_requested_to_crew_and_back():
    st, wp = stack_with_walk_planner()
    fid = "0c5a3c5e-1f7e-4a55-9d7e-7a1f5d0b2a01"
    deadline = int(time.time() + 30 * 86400) * 10**6  # in 30 days
    publish("FindingTaskRequested", finding(fid, unit="street-lighting", deadline_us=deadline))
    d = st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [fid], 20,
                         "the finding's webhook")[0]
    check(d["signature_ok"], "signature")
    check(d["unit"] == "street-lighting", "the named unit must win over the rules: %r" % d["unit"])
    check(d["task"].get("source") == "walk", "source %r" % d["task"].get("source"))
    check(d["task"].get("description") == "Trasig belysning i trappan", "description %r" % d["task"])
    task = d["task_id"]
    days = psql1("SELECT round(completion_target_s / 86400.0) FROM notifier.tasks WHERE id = '%s'" % task)
    check(days == "30", "the deadline is not the completion target: %r days" % days)
    opened = [e for e in st.events(task) if e[1] == "TaskOpened"]
    check(opened and fid in opened[0][3], "TaskOpened names %r" % (opened,))
    status, body = st.api("POST", "/v1/tasks/%s/ack" % task, unit="street-lighting")
    check(status == 200, "ack %s %r" % (status, body))
    status, body = st.api("POST", "/v1/tasks/%s/done" % task, unit="street-lighting",
                          body={"note": "lampan bytt"})
    check(status == 200 and body["status"] == "done", "done %s %r" % (status, body))
    st.wait_events(task, ["TaskOpened", "TaskDispatched", "TaskAcknowledged", "TaskCompleted"], 20)
    # An unknown unit falls back to the routing rules (litter at Sergels torg).
    fid2 = "0c5a3c5e-1f7e-4a55-9d7e-7a1f5d0b2a02"
    publish("FindingTaskRequested", finding(fid2, unit="no-such-unit"))
    d2 = st.wait_delivery(lambda d: d.get("task", {}).get("report_ids") == [fid2], 20,
                          "the second finding's webhook")[0]
    check(d2["unit"] == "cleaning-south", "routed to %r" % d2["unit"])
