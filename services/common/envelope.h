/*
 * envelope.h: packing and unpacking bus frames and replay messages
 * (proto/trygg/bus.proto) with protobuf-c.
 *
 * Everything that arrives from the network is untrusted: unpacking uses a
 * capped allocator, so a hostile message can cost at most `cap` bytes of heap
 * (protobuf-c alone can amplify a message up to ~45x), and rejects messages
 * that are well-formed protobuf but not a sensible frame (no kind, empty
 * publisher, seq 0, ...).
 */
#ifndef TRYGG_ENVELOPE_H
#define TRYGG_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "trygg/bus.pb-c.h"
#include "util.h"

/* Default heap cap for unpacking one message from the bus. */
#define ENVELOPE_UNPACK_CAP (8u * 1024 * 1024)

/*
 * Unpacks a Frame. On success *out is a frame the caller frees with
 * envelope_frame_free(). Returns TRYGG_EPROTO for bytes that are not a valid
 * frame, TRYGG_ENOMEM when unpacking would exceed `cap` bytes.
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

#endif
