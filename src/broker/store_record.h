/* Value encodings of the broker store's LMDB tables (docs/STORE.md): pure
 * encoders and decoders, no I/O, no allocation, so they are unit-tested and
 * fuzzed on arbitrary bytes. Every value is
 *     version (1 byte) | kind (1 byte) | fields... | CRC32C (4 bytes, LE)
 * with the CRC over the record's LMDB key followed by everything before it
 * in the value: every function takes KEY_CRC = lmq_crc32c(0, key,
 * key length), so a value moved to another key, or a damaged key, fails. Invariant: a decoder that returns
 * 0 has checked the version, the kind, the CRC and that every length field
 * fits exactly in the value; string/byte fields it returns point into the
 * caller's buffer. */
#ifndef LMQ_BROKER_STORE_RECORD_H
#define LMQ_BROKER_STORE_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "broker/store.h"
#include "util/crc32c.h"

#define LMQ_STORE_REC_VERSION 1
/* A session record with a delayed will (lmq_store_session.has_will) is
 * written as version 2; every other record, and a session without one, as
 * version 1. */
#define LMQ_STORE_REC_VERSION_WILL 2

/* Record kinds (the second byte). */
#define LMQ_STORE_KIND_RETAINED 'R'
#define LMQ_STORE_KIND_MESSAGE 'M'
#define LMQ_STORE_KIND_REF 'C'
#define LMQ_STORE_KIND_SESSION 'S'
#define LMQ_STORE_KIND_SUB 'U'
#define LMQ_STORE_KIND_ENTRY 'Q'
#define LMQ_STORE_KIND_QOS2IN 'I'

/* Decoder defects, one code per defect (lmq_store_strerror describes them). */
enum lmq_store_rec_error {
    LMQ_STORE_REC_ESHORT = -4101,   /* shorter than its fixed part */
    LMQ_STORE_REC_EVERSION = -4102, /* unknown format version */
    LMQ_STORE_REC_EKIND = -4103,    /* kind byte is not the table's */
    LMQ_STORE_REC_ECRC = -4104,     /* CRC32C mismatch */
    LMQ_STORE_REC_ELENGTH = -4105,  /* length fields disagree with the value size */
    LMQ_STORE_REC_EFIELD = -4106,   /* a field is out of range (qos 3, state 9...) */
};

/* Message bodies ('M', messages table) and retained messages ('R'). */
size_t lmq_store_rec_message_size(const struct lmq_store_message *m);
void lmq_store_rec_message_encode(uint32_t key_crc, uint8_t kind, const struct lmq_store_message *m, uint8_t *out);
int lmq_store_rec_message_decode(uint32_t key_crc, uint8_t kind, const void *buf, size_t len,
                                 struct lmq_store_message *m);

/* Reference count of a body and the body's accounted size. */
#define LMQ_STORE_REC_REF_SIZE 14
void lmq_store_rec_ref_encode(uint32_t key_crc, uint32_t refcount, uint32_t msg_size, uint8_t *out);
int lmq_store_rec_ref_decode(uint32_t key_crc, const void *buf, size_t len, uint32_t *refcount, uint32_t *msg_size);

size_t lmq_store_rec_session_size(const struct lmq_store_session *sess);
void lmq_store_rec_session_encode(uint32_t key_crc, const struct lmq_store_session *sess, uint8_t *out);
int lmq_store_rec_session_decode(uint32_t key_crc, const void *buf, size_t len, struct lmq_store_session *sess);

size_t lmq_store_rec_sub_size(const struct lmq_store_sub *sub);
void lmq_store_rec_sub_encode(uint32_t key_crc, const struct lmq_store_sub *sub, uint8_t *out);
int lmq_store_rec_sub_decode(uint32_t key_crc, const void *buf, size_t len, struct lmq_store_sub *sub);

/* Queue entries; the seq is in the key, so E->seq is neither written nor read. */
#define LMQ_STORE_REC_ENTRY_SIZE 23
void lmq_store_rec_entry_encode(uint32_t key_crc, const struct lmq_store_entry *e, uint8_t *out);
int lmq_store_rec_entry_decode(uint32_t key_crc, const void *buf, size_t len, struct lmq_store_entry *e);

/* Incoming QoS 2 ids: the packet id is in the key, the value is a marker. */
#define LMQ_STORE_REC_QOS2IN_SIZE 6
void lmq_store_rec_qos2in_encode(uint32_t key_crc, uint8_t *out);
int lmq_store_rec_qos2in_decode(uint32_t key_crc, const void *buf, size_t len);

#endif
