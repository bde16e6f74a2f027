/*
 * mail.c: composing task e-mails and the SMTP transfers that send them
 * (see mail.h).
 */
#include "mail.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "strbuf.h"

struct mail_job {
	char *text;
	size_t len, off;
	struct curl_slist *rcpt;
};

/* Header values must not carry line breaks (header injection). */
static bool
header_safe(const char *s)
{
	for (; *s; s++)
		if (*s == '\r' || *s == '\n')
			return false;
	return true;
}

static const char *
str_or(const json_t *o, const char *k, const char *def)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v && v[0] ? v : def;
}

/* Copies s with CR/LF replaced by spaces (for text from the task). */
static char *
one_line(const char *s)
{
	char *o = xstrdup(s);
	for (char *p = o; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	return o;
}

static size_t
read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	mail_job *j = arg;
	size_t room = size * nitems, left = j->len - j->off;
	size_t n = left < room ? left : room;
	memcpy(buf, j->text + j->off, n);
	j->off += n;
	return n;
}

int
mail_prepare(const mail_params *p, CURL **easy, mail_job **job)
{
	if (!header_safe(p->to) || !header_safe(p->from) || strchr(p->to, '<') ||
	    strchr(p->to, '>'))
		return TRYGG_EINVAL;
	const json_t *t = p->task;
	char *category = one_line(str_or(t, "category", "?"));
	char *place = one_line(str_or(t, "task_key", "?"));
	char *address = one_line(str_or(t, "address", ""));
	json_int_t prio = json_integer_value(json_object_get(t, "priority"));
	json_int_t count = json_integer_value(json_object_get(t, "report_count"));
	const char *what = strcmp(p->kind, "reminder") == 0 ? "Reminder: please acknowledge"
	    : strcmp(p->kind, "escalation") == 0            ? "Escalation"
	    : strcmp(p->kind, "copy") == 0                  ? "For your information"
	                                                    : "New task";
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	strbuf b = STRBUF_INIT;
	strbuf_appendf(&b,
	    "From: Trygg notifier <%s>\r\nTo: <%s>\r\nSubject: [Trygg] %s: %s at %s (priority "
	    "%lld)\r\n"
	    "Date: %s\r\nMessage-ID: <%s@trygg.notifier>\r\nTrygg-Delivery: %s\r\n"
	    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: 8bit\r\n\r\n",
	    p->from, p->to, what, category, place, (long long)prio, date, p->delivery_id,
	    p->delivery_id);
	strbuf_appendf(&b, "%s for unit %s.\r\n\r\n", what, str_or(t, "unit", "?"));
	strbuf_appendf(&b, "Task:      %s\r\n", str_or(t, "id", "?"));
	strbuf_appendf(&b, "Category:  %s\r\nWhere:     %s%s%s\r\n", category, place,
	    address[0] ? ", " : "", address);
	if (json_is_number(json_object_get(t, "lat")))
		strbuf_appendf(&b, "Position:  %.6f, %.6f\r\n",
		    json_number_value(json_object_get(t, "lat")),
		    json_number_value(json_object_get(t, "long")));
	strbuf_appendf(&b, "Priority:  %lld (%lld report%s)\r\nStatus:    %s\r\n", (long long)prio,
	    (long long)count, count == 1 ? "" : "s", str_or(t, "status", "?"));
	strbuf_appendf(&b, "Ack by:    %s\r\nDone by:   %s\r\n\r\n", str_or(t, "ack_by", "?"),
	    str_or(t, "complete_by", "?"));
	if (p->ack_link)
		strbuf_appendf(&b, "Acknowledge: %s\r\n", p->ack_link);
	if (p->done_link)
		strbuf_appendf(&b, "Mark done:   %s\r\n", p->done_link);
	strbuf_appendf(&b, "\r\nDelivery %s\r\n", p->delivery_id);
	free(category);
	free(place);
	free(address);

	mail_job *j = xcalloc(1, sizeof(*j));
	j->len = b.len;
	j->text = strbuf_steal(&b);
	char rcpt[512];
	snprintf(rcpt, sizeof(rcpt), "<%s>", p->to);
	j->rcpt = curl_slist_append(NULL, rcpt);
	CURL *e = curl_easy_init();
	if (e == NULL || j->rcpt == NULL)
		abort(); /* out of memory: the project's policy (util.h) */
	char from[512];
	snprintf(from, sizeof(from), "<%s>", p->from);
	curl_easy_setopt(e, CURLOPT_URL, p->smtp_url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(e, CURLOPT_MAIL_RCPT, j->rcpt);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(e, CURLOPT_READDATA, j);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->len);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(p->timeout_ms ? p->timeout_ms : 30000));
	*easy = e;
	*job = j;
	return 0;
}

const char *
mail_job_text(const mail_job *job)
{
	return job->text;
}

void
mail_job_free(mail_job *job)
{
	if (job == NULL)
		return;
	curl_slist_free_all(job->rcpt);
	free(job->text);
	free(job);
}
