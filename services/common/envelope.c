/*
 * envelope.c: bounded unpacking, validation and packing of the bus messages
 * in proto/trygg/bus.proto.
 *
 * protobuf-c trusts its input: a few bytes can ask for a large allocation,
 * and nested empty entries amplify a message many times over. Every unpack
 * here therefore goes through a capped ProtobufCAllocator. Each allocation
 * carries a small header holding its size, so the free callback can give the
 * bytes back to the budget and can find the start of the block.
 *
 * Allocator lifetime. protobuf-c's free_unpacked() needs an allocator whose
 * free callback matches the one used to unpack, and it must still exist when
 * the message is freed, possibly long after the unpack call returned. The
 * budget itself only matters while unpacking (it bounds one call; a message
 * already in memory costs what it costs). So the budgeted allocator lives on
 * the stack of the unpack call, and the free functions use one static
 * allocator with the same callbacks and no budget (allocator_data NULL): its
 * free callback strips the header exactly like the budgeted one, it just has
 * nothing to subtract from. Consequence for callers: a message from this
 * module must be freed with the matching envelope_*_free(), never with
 * protobuf-c's *_free_unpacked(..., NULL), which would free() a pointer
 * that is 16 bytes into its block.
 */
#include "envelope.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Limits checked after unpacking; see validate_*(). */
#define PUBLISHER_MAX 64
#define EVENT_ID_MAX 64
#define TYPE_MAX 128
#define EPOCH_MAX 64 /* a UUID's 36; may be empty (an older publisher) */

/*
 * The per-allocation header: big enough to keep the block that follows it
 * aligned for any type, as malloc's own blocks are.
 */
typedef union alloc_hdr {
	size_t size;
	max_align_t align;
} alloc_hdr;

/* The budget of one unpack call. */
typedef struct capped_budget {
	size_t cap;
	size_t used;
	bool refused; /* an allocation was refused: report ENOMEM, not EPROTO */
} capped_budget;

/*
 * Allocates n bytes for protobuf-c, charging n plus the header to the budget
 * in `data` (a capped_budget). Returns NULL, and remembers why, once the
 * budget would be exceeded; protobuf-c then frees what it had and fails.
 * With data NULL (the release allocator) nothing may be allocated.
 */
static void *
capped_alloc(void *data, size_t n)
{
	capped_budget *b = data;
	if (b == NULL)
		return NULL;
	if (n > SIZE_MAX - sizeof(alloc_hdr) || n + sizeof(alloc_hdr) > b->cap - b->used) {
		b->refused = true;
		return NULL;
	}
	size_t total = n + sizeof(alloc_hdr);
	/* malloc, not xmalloc: the cap, not the abort policy, bounds this. A
	 * failing malloc is reported like a refusal. */
	alloc_hdr *h = malloc(total);
	if (h == NULL) {
		b->refused = true;
		return NULL;
	}
	h->size = total;
	b->used += total;
	return h + 1;
}

/* Frees a block from capped_alloc() and, if there is a budget, credits it. */
static void
capped_free(void *data, void *p)
{
	if (p == NULL)
		return;
	alloc_hdr *h = (alloc_hdr *)p - 1;
	capped_budget *b = data;
	if (b != NULL)
		b->used -= h->size;
	free(h);
}

/* Frees messages after unpack has returned (see the file comment). protobuf-c
 * takes a non-const pointer but never writes through it. */
static ProtobufCAllocator release_allocator = {
    .alloc = capped_alloc,
    .free = capped_free,
    .allocator_data = NULL,
};

/*
 * True if no message in the tree under m has an unknown field numbered 0.
 * Field 0 is illegal in protobuf, but protobuf-c accepts it in a two-byte
 * tag (0x80 0x00) and then packs it as the one-byte tag 0x00, which it
 * refuses to read back: found by fuzz_envelope. We reject it so that what
 * we accept we can also repack and read (e.g. when relaying).
 */
static bool
no_field_zero(const ProtobufCMessage *m)
{
	for (unsigned i = 0; i < m->n_unknown_fields; i++) {
		if (m->unknown_fields[i].tag == 0)
			return false;
	}
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *fd = &d->fields[i];
		if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + fd->quantifier_offset);
			ProtobufCMessage *const *arr =
			    *(ProtobufCMessage *const *const *)(base + fd->offset);
			for (size_t j = 0; j < n; j++) {
				if (arr[j] != NULL && !no_field_zero(arr[j]))
					return false;
			}
			continue;
		}
		/* A oneof member's pointer shares a union with its siblings:
		 * only the one the case names is set. */
		if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + fd->quantifier_offset) != fd->id)
			continue;
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + fd->offset);
		if (sub != NULL && !no_field_zero(sub))
			return false;
	}
	return true;
}

int
envelope_message_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
    size_t cap, ProtobufCMessage **out)
{
	*out = NULL;
	if (desc == NULL || (buf == NULL && len > 0))
		return TRYGG_EINVAL;
	capped_budget b = {.cap = cap ? cap : ENVELOPE_UNPACK_CAP};
	ProtobufCAllocator a = {
	    .alloc = capped_alloc,
	    .free = capped_free,
	    .allocator_data = &b,
	};
	static const uint8_t empty[1];
	ProtobufCMessage *m = protobuf_c_message_unpack(desc, &a, len, buf ? buf : empty);
	if (m == NULL)
		return b.refused ? TRYGG_ENOMEM : TRYGG_EPROTO;
	if (!no_field_zero(m)) {
		envelope_message_free(m);
		return TRYGG_EPROTO;
	}
	*out = m;
	return 0;
}

void
envelope_message_free(ProtobufCMessage *m)
{
	if (m != NULL)
		protobuf_c_message_free_unpacked(m, &release_allocator);
}

/* True if s is non-empty and at most max bytes long. */
static bool
str_ok(const char *s, size_t max)
{
	if (s == NULL || s[0] == '\0')
		return false;
	return strnlen(s, max + 1) <= max;
}

/* True if s (which may be empty) is at most EPOCH_MAX bytes long. */
static bool
epoch_ok(const char *s)
{
	return s == NULL || strnlen(s, EPOCH_MAX + 1) <= EPOCH_MAX;
}

static bool
envelope_ok(const Trygg__Bus__Envelope *e)
{
	return e != NULL && str_ok(e->publisher, PUBLISHER_MAX) && e->seq >= 1 &&
	    str_ok(e->event_id, EVENT_ID_MAX) && str_ok(e->type, TYPE_MAX) && epoch_ok(e->epoch);
}

static bool
heartbeat_ok(const Trygg__Bus__Heartbeat *h)
{
	/* Same bound as an event's publisher: it names the same thing. */
	return h != NULL && str_ok(h->publisher, PUBLISHER_MAX) && epoch_ok(h->epoch);
}

static bool
frame_ok(const Trygg__Bus__Frame *f)
{
	switch (f->kind_case) {
	case TRYGG__BUS__FRAME__KIND_EVENT: return envelope_ok(f->event);
	case TRYGG__BUS__FRAME__KIND_HEARTBEAT: return heartbeat_ok(f->heartbeat);
	default: return false;
	}
}

static bool
replay_request_ok(const Trygg__Bus__ReplayRequest *r)
{
	return str_ok(r->publisher, PUBLISHER_MAX) && r->from_seq >= 1;
}

static bool
replay_reply_ok(const Trygg__Bus__ReplayReply *r)
{
	if (!epoch_ok(r->epoch))
		return false;
	for (size_t i = 0; i < r->n_events; i++) {
		if (!envelope_ok(r->events[i]))
			return false;
	}
	return true;
}

/*
 * Unpacks one message of type desc and checks it with ok(); the common body
 * of the typed unpack functions below. On any failure nothing is left
 * allocated and *out is NULL.
 */
static int
unpack_checked(const ProtobufCMessageDescriptor *desc, bool (*ok)(const void *), const uint8_t *buf,
    size_t len, size_t cap, ProtobufCMessage **out)
{
	int rv = envelope_message_unpack(desc, buf, len, cap, out);
	if (rv != 0)
		return rv;
	if (!ok(*out)) {
		envelope_message_free(*out);
		*out = NULL;
		return TRYGG_EPROTO;
	}
	return 0;
}

/* Adapters so unpack_checked() can take one predicate type. */
static bool
frame_ok_v(const void *p)
{
	return frame_ok(p);
}

static bool
replay_request_ok_v(const void *p)
{
	return replay_request_ok(p);
}

static bool
replay_reply_ok_v(const void *p)
{
	return replay_reply_ok(p);
}

int
envelope_frame_unpack(const uint8_t *buf, size_t len, size_t cap, Trygg__Bus__Frame **out)
{
	ProtobufCMessage *m;
	int rv = unpack_checked(&trygg__bus__frame__descriptor, frame_ok_v, buf, len, cap, &m);
	*out = (Trygg__Bus__Frame *)m;
	return rv;
}

void
envelope_frame_free(Trygg__Bus__Frame *f)
{
	envelope_message_free((ProtobufCMessage *)f);
}

int
envelope_replay_request_unpack(const uint8_t *buf, size_t len, size_t cap,
    Trygg__Bus__ReplayRequest **out)
{
	ProtobufCMessage *m;
	int rv = unpack_checked(&trygg__bus__replay_request__descriptor, replay_request_ok_v, buf,
	    len, cap, &m);
	*out = (Trygg__Bus__ReplayRequest *)m;
	return rv;
}

void
envelope_replay_request_free(Trygg__Bus__ReplayRequest *r)
{
	envelope_message_free((ProtobufCMessage *)r);
}

int
envelope_replay_reply_unpack(const uint8_t *buf, size_t len, size_t cap,
    Trygg__Bus__ReplayReply **out)
{
	ProtobufCMessage *m;
	int rv = unpack_checked(&trygg__bus__replay_reply__descriptor, replay_reply_ok_v, buf, len,
	    cap, &m);
	*out = (Trygg__Bus__ReplayReply *)m;
	return rv;
}

void
envelope_replay_reply_free(Trygg__Bus__ReplayReply *r)
{
	envelope_message_free((ProtobufCMessage *)r);
}

/*
 * Packs any message into a new nng_msg of exactly its packed size. nng_msg
 * allocation failing is out of memory, which aborts (util.h's policy).
 */
static nng_msg *
pack_msg(const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	nng_msg *msg;
	if (nng_msg_alloc(&msg, len) != 0) {
		fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory\",\"bytes\":%zu}\n",
		    len);
		abort();
	}
	protobuf_c_message_pack(m, nng_msg_body(msg));
	return msg;
}

nng_msg *
envelope_message_pack(const ProtobufCMessage *m)
{
	return pack_msg(m);
}

int
envelope_frame_pack(const Trygg__Bus__Frame *f, nng_msg **out)
{
	*out = NULL;
	if (!frame_ok(f))
		return TRYGG_EINVAL;
	*out = pack_msg(&f->base);
	return 0;
}

int
envelope_replay_request_pack(const Trygg__Bus__ReplayRequest *r, nng_msg **out)
{
	*out = NULL;
	if (!replay_request_ok(r))
		return TRYGG_EINVAL;
	*out = pack_msg(&r->base);
	return 0;
}

int
envelope_replay_reply_pack(const Trygg__Bus__ReplayReply *r, nng_msg **out)
{
	*out = NULL;
	if (!replay_reply_ok(r))
		return TRYGG_EINVAL;
	*out = pack_msg(&r->base);
	return 0;
}
