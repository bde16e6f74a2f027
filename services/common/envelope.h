/*
 * envelope.h: packing and unpacking bus frames and replay messages
 * (proto/trygg/bus.proto) with protobuf-c.
 *
 * Everything that arrives from the network is untrusted: unpacking uses a
 * capped allocator, so a hostile message can cost at most `cap` bytes of heap
 * (protobuf-c alone can amplify a message up to ~45x), and rejects messages
 * that are well-formed protobuf but not a sensible frame (no kind, empty
 * publisher, seq 0, ...).
 *
 * Validation (the same rules apply to packing, so a bug in our own publisher
 * is caught before the message leaves): a Frame has a kind; an Envelope has a
 * publisher of 1..64 bytes, seq >= 1, an event_id of 1..64 bytes and a type
 * of 1..128 bytes; a Heartbeat has a publisher of 1..64 bytes; a
 * ReplayRequest has a publisher of 1..64 bytes and from_seq >= 1; every event
 * of a ReplayReply is a valid Envelope. The epoch of an Envelope, Heartbeat
 * or ReplayReply is at most 64 bytes and may be empty (a publisher from
 * before epochs: subscribers then do not check it). Any message (also through
 * envelope_message_unpack) with a field numbered 0 is rejected: protobuf-c
 * would accept it but could not read back its own repacking of it.
 *
 * Ownership: a message returned by an unpack function belongs to the caller,
 * who frees it with the matching envelope_*_free() (each accepts NULL), never
 * with protobuf-c's *_free_unpacked(): the blocks come from our capped
 * allocator and carry a header (see envelope.c). Pack functions return a new
 * nng_msg the caller owns (typically handing it to bus_send/bus_reply).
 */
#ifndef TRYGG_ENVELOPE_H
#define TRYGG_ENVELOPE_H

#include <nng/nng.h>
#include <stdbool.h>
#include <stddef.h>

#include "trygg/bus.pb-c.h"
#include "util.h"

/* Default heap cap for unpacking one message from the bus. */
#define ENVELOPE_UNPACK_CAP (8u * 1024 * 1024)

/*
 * Unpacks a Frame. On success *out is a frame the caller frees with
 * envelope_frame_free(). Returns TRYGG_EPROTO for bytes that are not a valid
 * frame, TRYGG_ENOMEM when unpacking would exceed `cap` bytes (0 means
 * ENVELOPE_UNPACK_CAP). On error *out is NULL and nothing stays allocated.
 */
int envelope_frame_unpack(const uint8_t *buf, size_t len, size_t cap,
    Trygg__Bus__Frame **out) TRYGG_MUSTCHECK;
void envelope_frame_free(Trygg__Bus__Frame *f);

/* Same contract for replay requests and replies. */
int envelope_replay_request_unpack(const uint8_t *buf, size_t len, size_t cap,
    Trygg__Bus__ReplayRequest **out) TRYGG_MUSTCHECK;
void envelope_replay_request_free(Trygg__Bus__ReplayRequest *r);
int envelope_replay_reply_unpack(const uint8_t *buf, size_t len, size_t cap,
    Trygg__Bus__ReplayReply **out) TRYGG_MUSTCHECK;
void envelope_replay_reply_free(Trygg__Bus__ReplayReply *r);

/*
 * Packs a valid message into a new nng_msg (*out, owned by the caller).
 * Returns TRYGG_EINVAL, with *out NULL, if the message would fail the
 * receiver's validation above. Out of memory aborts (util.h).
 */
int envelope_frame_pack(const Trygg__Bus__Frame *f, nng_msg **out) TRYGG_MUSTCHECK;
int envelope_replay_request_pack(const Trygg__Bus__ReplayRequest *r, nng_msg **out) TRYGG_MUSTCHECK;
int envelope_replay_reply_pack(const Trygg__Bus__ReplayReply *r, nng_msg **out) TRYGG_MUSTCHECK;

/*
 * Any other protobuf message (e.g. an event payload, also untrusted): unpack
 * with the same capped allocator but no validation beyond protobuf's own, and
 * free with envelope_message_free() (accepts NULL). Same errors as above.
 * envelope_message_pack() packs any message into a new nng_msg; it cannot
 * fail.
 */
int envelope_message_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
    size_t cap, ProtobufCMessage **out) TRYGG_MUSTCHECK;
void envelope_message_free(ProtobufCMessage *m);
nng_msg *envelope_message_pack(const ProtobufCMessage *m);

#endif
