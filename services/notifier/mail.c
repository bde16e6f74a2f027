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

/* The current time as an RFC 5322 Date header value. */
static void
rfc5322_now(char *buf, size_t len)
{
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
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

/* Turns the composed message into a job and an easy handle that sends it
 * to one recipient. Takes b's text. */
static int
make_job(strbuf *b, const char *smtp_url, const char *sender, const char *to, unsigned timeout_ms,
    CURL **easy, mail_job **job)
{
	mail_job *j = xcalloc(1, sizeof(*j));
	j->len = b->len;
	j->text = strbuf_steal(b);
	char rcpt[512];
	snprintf(rcpt, sizeof(rcpt), "<%s>", to);
	j->rcpt = curl_slist_append(NULL, rcpt);
	CURL *e = curl_easy_init();
	if (e == NULL || j->rcpt == NULL)
		abort(); /* out of memory: the project's policy (util.h) */
	char from[512];
	snprintf(from, sizeof(from), "<%s>", sender);
	curl_easy_setopt(e, CURLOPT_URL, smtp_url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(e, CURLOPT_MAIL_RCPT, j->rcpt);
	curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(e, CURLOPT_READDATA, j);
	curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->len);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout_ms ? timeout_ms : 30000));
	*easy = e;
	*job = j;
	return 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Appends data in base64, lines of 76 characters ending in CRLF. */
static void
append_base64(strbuf *b, const unsigned char *d, size_t n)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned)d[i] << 16;
		if (i + 1 < n)
			v |= (unsigned)d[i + 1] << 8;
		if (i + 2 < n)
			v |= d[i + 2];
		char q[5] = {B64[(v >> 18) & 63], B64[(v >> 12) & 63],
		    i + 1 < n ? B64[(v >> 6) & 63] : '=', i + 2 < n ? B64[v & 63] : '=', 0};
		strbuf_append(b, q);
		if ((col += 4) >= 76) {
			strbuf_append(b, "\r\n");
			col = 0;
		}
	}
	if (col)
		strbuf_append(b, "\r\n");
}

/* Decodes base64 (as Postgres' encode() writes it, with line breaks). */
static unsigned char *
decode_base64(const char *s, size_t *n)
{
	size_t len = strlen(s);
	unsigned char *out = xmalloc(len / 4 * 3 + 3);
	unsigned v = 0;
	int bits = 0;
	size_t o = 0;
	for (; *s; s++) {
		const char *p = *s ? strchr(B64, *s) : NULL;
		if (p == NULL)
			continue; /* '=', line breaks */
		v = (v << 6) | (unsigned)(p - B64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(v >> bits);
		}
	}
	*n = o;
	return out;
}

/* True if s needs no encoding in a header: printable ASCII. */
static bool
plain_ascii(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* Appends a header text: as is when plain ASCII, else as an RFC 2047
 * encoded word (UTF-8, base64). */
static void
append_header_text(strbuf *b, const char *s)
{
	if (plain_ascii(s)) {
		strbuf_append(b, s);
		return;
	}
	strbuf_append(b, "=?UTF-8?B?");
	strbuf w = STRBUF_INIT;
	append_base64(&w, (const unsigned char *)s, strlen(s));
	for (size_t i = 0; i < w.len; i++)
		if (w.s[i] != '\r' && w.s[i] != '\n')
			strbuf_appendc(b, w.s[i]);
	strbuf_fini(&w);
	strbuf_append(b, "?=");
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
	rfc5322_now(date, sizeof(date));

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

	return make_job(&b, p->smtp_url, p->from, p->to, p->timeout_ms, easy, job);
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

int
mail_prepare_message(const mail_message *p, CURL **easy, mail_job **job)
{
	const json_t *m = p->mail;
	const char *to = str_or(m, "to_address", "");
	const char *to_name = str_or(m, "to_name", "");
	const char *subject = str_or(m, "subject", "");
	const char *text = str_or(m, "body_text", "");
	const char *att_name = str_or(m, "attachment_name", "");
	const char *att_type = str_or(m, "attachment_type", "application/octet-stream");
	if (!to[0] || !header_safe(to) || !header_safe(p->from) || strchr(to, '<') ||
	    strchr(to, '>') || !header_safe(to_name) || !header_safe(subject) ||
	    !header_safe(att_name) || !header_safe(att_type) || strchr(att_name, '"'))
		return TRYGG_EINVAL;
	char date[64];
	rfc5322_now(date, sizeof(date));
	strbuf b = STRBUF_INIT;
	strbuf_appendf(&b, "From: Trygg <%s>\r\nTo: ", p->from);
	if (to_name[0]) {
		append_header_text(&b, to_name);
		strbuf_appendc(&b, ' ');
	}
	strbuf_appendf(&b, "<%s>\r\nSubject: ", to);
	append_header_text(&b, subject);
	strbuf_appendf(&b,
	    "\r\nDate: %s\r\nMessage-ID: <%s@trygg.notifier>\r\nTrygg-Delivery: %s\r\n"
	    "MIME-Version: 1.0\r\n",
	    date, p->delivery_id, p->delivery_id);
	/* The text in base64 too: any bytes, any line length, survive relays. */
	if (att_name[0]) {
		strbuf_appendf(&b,
		    "Content-Type: multipart/mixed; boundary=\"=_trygg_%s\"\r\n\r\n"
		    "--=_trygg_%s\r\n",
		    p->delivery_id, p->delivery_id);
	}
	strbuf_append(&b,
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Transfer-Encoding: base64\r\n\r\n");
	append_base64(&b, (const unsigned char *)text, strlen(text));
	if (att_name[0]) {
		size_t n;
		unsigned char *data = decode_base64(str_or(m, "attachment", ""), &n);
		/* The type as walk-planner gave it, parameters (method=) kept. */
		strbuf_appendf(&b,
		    "\r\n--=_trygg_%s\r\nContent-Type: %s\r\n"
		    "Content-Disposition: attachment; filename=\"%s\"\r\n"
		    "Content-Transfer-Encoding: base64\r\n\r\n",
		    p->delivery_id, att_type, att_name);
		append_base64(&b, data, n);
		strbuf_appendf(&b, "\r\n--=_trygg_%s--\r\n", p->delivery_id);
		free(data);
	}
	return make_job(&b, p->smtp_url, p->from, to, p->timeout_ms, easy, job);
}
