/* C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 (signature
 * type 0x01) and C2SP tlog-cosignature/v1 timestamped Ed25519 cosignatures
 * (type 0x04). Text formats: docs/FORMATS.md "Verifier keys" and "Signed
 * notes". Pure: no I/O, no allocation; outputs go to caller buffers and
 * parsed results are views into the caller's input. Any thread. */
#ifndef LMQ_CRYPTO_NOTE_H
#define LMQ_CRYPTO_NOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define NOTE_MAX_SIGS 100       /* more signature lines -> malformed */
#define NOTE_MAX_SIZE (1 << 20) /* bytes of a whole note */
#define NOTE_NAME_MAX 255       /* bytes of a key name */
#define NOTE_SIG_ED25519 0x01
#define NOTE_SIG_COSIGNATURE 0x04
/* Longest verifier key string: name + '+' + 8 hex + '+' + b64(33) + NUL. */
#define NOTE_VKEY_MAX (NOTE_NAME_MAX + 1 + 8 + 1 + 44 + 1)

enum note_err {
    NOTE_ERR_MALFORMED = -1,     /* not a well-formed signed note */
    NOTE_ERR_BAD_SIGNATURE = -2, /* a signature of a known key failed */
    NOTE_ERR_UNVERIFIED = -3,    /* no signature of a known key */
    NOTE_ERR_SPACE = -4,         /* output buffer too small */
    NOTE_ERR_ARGS = -5,          /* invalid name, text, or key string */
    NOTE_ERR_QUORUM = -6,        /* fewer verified signers than required */
};

struct note_verifier {
    char name[NOTE_NAME_MAX + 1]; /* NUL-terminated */
    size_t name_len;
    uint8_t type; /* NOTE_SIG_ED25519 or NOTE_SIG_COSIGNATURE */
    uint32_t key_id;
    uint8_t pk[32];
};

/* 1 if name[0:len] is a valid key name (non-empty, <= NOTE_NAME_MAX, valid
 * UTF-8, no Unicode space, no '+', no control characters), else 0. */
int note_name_valid(const char *name, size_t len);

/* key ID = big-endian first 4 bytes of SHA-256(name || 0x0A || type || pk). */
uint32_t note_key_id(const char *name, size_t name_len, uint8_t type, const uint8_t pk[32]);

/* Fills v for an Ed25519 (type 0x01) key. NOTE_ERR_ARGS if the name is invalid. */
int note_verifier_init(struct note_verifier *v, const char *name, const uint8_t pk[32]);
int note_verifier_init_type(struct note_verifier *v, const char *name, uint8_t type,
                            const uint8_t pk[32]);

/* Formats "name+hexkeyid+base64(type || pk)" with NUL into out. Returns the
 * length, NOTE_ERR_SPACE or NOTE_ERR_ARGS. */
ssize_t note_verifier_format(const struct note_verifier *v, char *out, size_t cap);
/* Parses a verifier key string (exact length len, no trailing newline).
 * Rejects unknown types, wrong key lengths, and a key ID that does not
 * match the hash of name and key. 0 or NOTE_ERR_ARGS. */
int note_verifier_parse(const char *vkey, size_t len, struct note_verifier *v);

/* Writes text followed by "\n" and one Ed25519 signature line
 * "— name base64(keyid || sig)\n" into out (NUL-terminated). text must be
 * non-empty, valid note text (UTF-8, no control characters except '\n')
 * ending in '\n'. Returns the note length, NOTE_ERR_ARGS or NOTE_ERR_SPACE. */
ssize_t note_sign(const char *text, size_t text_len, const char *name, const uint8_t sk[64],
                  const uint8_t pk[32], char *out, size_t cap);

/* Copies an already signed note into out and appends one more Ed25519
 * signature line over the same text. A signature by the same key (name and
 * key ID) already present is replaced rather than duplicated. The existing
 * signatures are not verified here. Returns the new length or an error. */
ssize_t note_add_signature(const char *note, size_t note_len, const char *name,
                           const uint8_t sk[64], const uint8_t pk[32], char *out, size_t cap);

/* Appends a C2SP tlog-cosignature/v1 line (type 0x04, timestamp in seconds
 * since the epoch) to a signed checkpoint note. Same contract as
 * note_add_signature. */
ssize_t note_add_cosignature(const char *note, size_t note_len, const char *name,
                             uint64_t timestamp, const uint8_t sk[64], const uint8_t pk[32],
                             char *out, size_t cap);

/* Result of note_verify. text/ text_len view the caller's note. */
struct note_verified {
    const char *text; /* note text including its final '\n' */
    size_t text_len;
    size_t n_sigs;     /* signature lines in the note (known or not) */
    size_t n_verified; /* known keys whose signature verified (a key listed twice
                          among the verifiers counts once) */
};

/* Parses the note, checks every signature line's syntax, verifies every
 * signature whose (name, key ID) matches one of the verifiers, ignores the
 * others. signed_by (may be NULL) has n_verifiers entries and is set to
 * whether verifier i signed. Returns 0 if at least one known signature
 * verified and none failed; NOTE_ERR_MALFORMED, NOTE_ERR_BAD_SIGNATURE or
 * NOTE_ERR_UNVERIFIED otherwise. A note carrying two signature lines from
 * the same known key is malformed. out (may be NULL) receives the text view
 * and counts. */
int note_verify(const char *note, size_t note_len, const struct note_verifier *verifiers,
                size_t n_verifiers, bool *signed_by, struct note_verified *out);

/* Splits a note into text and signature block without verifying anything
 * (syntax is fully checked). 0 or NOTE_ERR_MALFORMED. */
int note_split(const char *note, size_t note_len, const char **text, size_t *text_len,
               size_t *n_sigs);

#endif
