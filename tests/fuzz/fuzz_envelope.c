/*
 * fuzz_envelope.c: libFuzzer target for the bus unpackers (envelope.c).
 *
 * Every input is unpacked as a Frame, a ReplayRequest and a ReplayReply
 * under a small cap, so the capped allocator's refusal paths are hit often.
 * Whatever is accepted must survive our own packer (the validation rules
 * are the same on both sides) and unpack again. Built and run by
 * run-fuzz.sh; the sources it needs are listed on the fuzz-sources line.
 *
 * fuzz-sources: services/common/envelope.c services/common/util.c
 *
 * Built with -DTRYGG_FUZZ_SEEDS instead, it is a small program that writes
 * a few valid packed messages into the directory named by argv[1], the
 * starting corpus.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "envelope.h"

#define FUZZ_CAP (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Packs an accepted message again and checks that it unpacks. */
static void
repack_check(int (*unpack)(nng_msg *, ProtobufCMessage **), nng_msg *m)
{
	ProtobufCMessage *again;
	if (unpack(m, &again) != 0)
		abort(); /* we produced something we refuse to read */
	envelope_message_free(again);
	nng_msg_free(m);
}

static int
unpack_frame_msg(nng_msg *m, ProtobufCMessage **out)
{
	Trygg__Bus__Frame *f;
	int rv = envelope_frame_unpack(nng_msg_body(m), nng_msg_len(m), 0, &f);
	*out = (ProtobufCMessage *)f;
	return rv;
}

static int
unpack_request_msg(nng_msg *m, ProtobufCMessage **out)
{
	Trygg__Bus__ReplayRequest *r;
	int rv = envelope_replay_request_unpack(nng_msg_body(m), nng_msg_len(m), 0, &r);
	*out = (ProtobufCMessage *)r;
	return rv;
}

static int
unpack_reply_msg(nng_msg *m, ProtobufCMessage **out)
{
	Trygg__Bus__ReplayReply *r;
	int rv = envelope_replay_reply_unpack(nng_msg_body(m), nng_msg_len(m), 0, &r);
	*out = (ProtobufCMessage *)r;
	return rv;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nng_msg *m;

	Trygg__Bus__Frame *f;
	int rv = envelope_frame_unpack(data, size, FUZZ_CAP, &f);
	if (rv == 0) {
		if (envelope_frame_pack(f, &m) != 0)
			abort();
		envelope_frame_free(f);
		repack_check(unpack_frame_msg, m);
	} else if (rv != TRYGG_EPROTO && rv != TRYGG_ENOMEM) {
		abort();
	}

	Trygg__Bus__ReplayRequest *q;
	rv = envelope_replay_request_unpack(data, size, FUZZ_CAP, &q);
	if (rv == 0) {
		if (envelope_replay_request_pack(q, &m) != 0)
			abort();
		envelope_replay_request_free(q);
		repack_check(unpack_request_msg, m);
	} else if (rv != TRYGG_EPROTO && rv != TRYGG_ENOMEM) {
		abort();
	}

	Trygg__Bus__ReplayReply *r;
	rv = envelope_replay_reply_unpack(data, size, FUZZ_CAP, &r);
	if (rv == 0) {
		if (envelope_replay_reply_pack(r, &m) != 0)
			abort();
		envelope_replay_reply_free(r);
		repack_check(unpack_reply_msg, m);
	} else if (rv != TRYGG_EPROTO && rv != TRYGG_ENOMEM) {
		abort();
	}
	return 0;
}

#ifdef TRYGG_FUZZ_SEEDS
/* Writes one packed message to dir/name. */
static void
write_seed(const char *dir, const char *name, nng_msg *m)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	if (fp == NULL || fwrite(nng_msg_body(m), 1, nng_msg_len(m), fp) != nng_msg_len(m)) {
		perror(path);
		exit(1);
	}
	fclose(fp);
	nng_msg_free(m);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
		return 2;
	}
	static uint8_t payload[] = {0x08, 0x2a, 0x12, 0x03, 'a', 'b', 'c'};
	static char epoch[] = "0b6a8a8e-54d5-4c7e-9a57-2a8f1f3f9c11";
	Trygg__Bus__Envelope e[3];
	Trygg__Bus__Envelope *ep[3];
	for (int i = 0; i < 3; i++) {
		trygg__bus__envelope__init(&e[i]);
		e[i].publisher = "intake";
		e[i].seq = 41 + (uint64_t)i;
		e[i].event_id = "6f1c2b8e-4f8a-4a51-9d36-1f6f3c5e9a10";
		e[i].occurred_at_us = 1764072000123456;
		e[i].type = "trygg.events.ReportReceived";
		e[i].payload.data = payload;
		e[i].payload.len = sizeof(payload);
		e[i].epoch = epoch;
		ep[i] = &e[i];
	}
	nng_msg *m;
	Trygg__Bus__Frame f = TRYGG__BUS__FRAME__INIT;
	f.kind_case = TRYGG__BUS__FRAME__KIND_EVENT;
	f.event = &e[0];
	if (envelope_frame_pack(&f, &m) != 0)
		return 1;
	write_seed(argv[1], "frame-event", m);

	Trygg__Bus__Heartbeat h = TRYGG__BUS__HEARTBEAT__INIT;
	h.publisher = "triage";
	h.last_seq = 1000;
	h.epoch = epoch;
	h.epoch_base_seq = 900;
	f.kind_case = TRYGG__BUS__FRAME__KIND_HEARTBEAT;
	f.heartbeat = &h;
	if (envelope_frame_pack(&f, &m) != 0)
		return 1;
	write_seed(argv[1], "frame-heartbeat", m);

	Trygg__Bus__ReplayRequest q = TRYGG__BUS__REPLAY_REQUEST__INIT;
	q.publisher = "intake";
	q.from_seq = 41;
	q.max_events = 500;
	if (envelope_replay_request_pack(&q, &m) != 0)
		return 1;
	write_seed(argv[1], "replay-request", m);

	Trygg__Bus__ReplayReply r = TRYGG__BUS__REPLAY_REPLY__INIT;
	r.n_events = 3;
	r.events = ep;
	r.last_seq = 43;
	r.first_available_seq = 1;
	r.epoch = epoch;
	r.epoch_base_seq = 40;
	if (envelope_replay_reply_pack(&r, &m) != 0)
		return 1;
	write_seed(argv[1], "replay-reply", m);

	Trygg__Bus__ReplayReply u = TRYGG__BUS__REPLAY_REPLY__INIT;
	u.status = TRYGG__BUS__REPLAY_REPLY__STATUS__UNAVAILABLE;
	u.error = "database unavailable";
	if (envelope_replay_reply_pack(&u, &m) != 0)
		return 1;
	write_seed(argv[1], "replay-reply-unavailable", m);
	return 0;
}
#endif
