/* MQTT over WebSocket (RFC 6455, MQTT 5.0 §6) as a transport filter (see
 * transport.h), server side. First the HTTP/1.1 Upgrade request (bounded
 * to LMQ_WS_MAX_HEADER bytes) is parsed and answered with 101 or an error
 * page; then libwslay decodes the client's binary frames (masked, no
 * reserved bits, at most max_frame bytes of payload each) into one MQTT
 * byte stream, answers pings and closes, and refuses text frames. Output
 * is one unmasked binary frame per lmq_filter_write() call.
 * Invariant: only payload bytes of binary data frames ever reach the
 * application buffer, in order, whatever the frame and read boundaries. */
#ifndef LMQ_NET_WS_H
#define LMQ_NET_WS_H

#include "net/transport.h"

#include <stddef.h>
#include <stdint.h>

#define LMQ_WS_MAX_HEADER 8192

/* A new WebSocket filter waiting for the Upgrade request. MAX_FRAME bounds
 * the payload of one received frame (pass the listener's max_packet_size:
 * MQTT clients send a packet per frame; a packet may also span frames).
 * NULL when out of memory. Free with lmq_filter_free(). */
struct lmq_filter *lmq_ws_filter_new(uint64_t max_frame);

/* The subprotocol chosen in the handshake ("mqtt" or "mqttv3.1", as the
 * client spelled it), "" before. */
const char *lmq_ws_subprotocol(const struct lmq_filter *f);

/* Writes the header of an unmasked binary frame of LEN payload bytes into
 * HDR and returns its length (2, 4 or 10). For a plain WebSocket listener
 * the server may writev this header followed by the payload iovecs
 * straight from its output queue instead of lmq_filter_write() (no copy),
 * but only while lmq_filter_wire() is empty and the state is OPEN without
 * CLOSE_SENT or ERROR. */
size_t lmq_ws_frame_header(uint64_t len, uint8_t hdr[10]);

/* Sec-WebSocket-Accept for KEY (RFC 6455 §4.2.2: base64 of the SHA-1 of
 * KEY followed by the GUID) into OUT (29 bytes with the NUL). 0 or -1. */
int lmq_ws_accept_key(const char *key, size_t keylen, char out[29]);

#endif
