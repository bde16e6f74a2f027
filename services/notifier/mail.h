/*
 * mail.h: task e-mails over SMTP through the configured relay (libcurl).
 *
 * mail_prepare() composes a plain-text message about a task (what, where,
 * priority, deadlines, and signed acknowledge and done links) and returns a
 * curl easy handle set up to send it, ready for http_client_submit(). The
 * message carries the delivery id in a Trygg-Delivery header and as its
 * Message-ID, so a receiving system can drop a retry it has already seen.
 *
 * Ownership: the caller gets the handle and a mail_job that must outlive
 * the transfer (curl reads the message from it); free the job with
 * mail_job_free() in the transfer's callback, or at once if submitting
 * failed (after curl_easy_cleanup of the handle).
 */
#ifndef NOTIFIER_MAIL_H
#define NOTIFIER_MAIL_H

#include <curl/curl.h>
#include <jansson.h>

#include "util.h"

typedef struct mail_job mail_job;

typedef struct mail_params {
	const char *smtp_url;    /* smtp://host:port */
	const char *from;        /* envelope and header sender */
	const char *to;          /* one address */
	const char *delivery_id; /* stable across retries */
	const char *kind;        /* task, copy, reminder, escalation */
	const json_t *task;      /* task_json() */
	const char *ack_link;    /* signed links; may be NULL */
	const char *done_link;
	unsigned timeout_ms;
} mail_params;

/*
 * Composes the message and the easy handle. Returns 0, or TRYGG_EINVAL
 * for an address with characters that cannot go into a header.
 */
int mail_prepare(const mail_params *p, CURL **easy, mail_job **job) TRYGG_MUSTCHECK;

/* An e-mail walk-planner asked for (MailRequested): the mail as
 * mail_json() in 003_history_walks.sql gives it (to_address, to_name,
 * subject, body_text, attachment_name, attachment_type, attachment in
 * base64). */
typedef struct mail_message {
	const char *smtp_url;
	const char *from;
	const char *delivery_id; /* stable across retries */
	const json_t *mail;
	unsigned timeout_ms;
} mail_message;

/*
 * Composes the message (text/plain, and with an attachment multipart/mixed
 * with the attachment as a base64 part of its own Content-Type) and the
 * easy handle, as mail_prepare. Returns 0, or TRYGG_EINVAL for header
 * values that cannot go into a header. Ownership as mail_prepare.
 */
int mail_prepare_message(const mail_message *p, CURL **easy, mail_job **job) TRYGG_MUSTCHECK;

/* The composed message text (for tests). */
const char *mail_job_text(const mail_job *job);

/* Frees the job. Accepts NULL. */
void mail_job_free(mail_job *job);

#endif
