/*
 * spool: the only code that touches the spool directory.
 *
 * Layout under dir: tmp/ (messages being received), queue/ (committed,
 * waiting), hold/ (held by the operator), dead/ (refused or expired),
 * quarantine/ (unreadable, found by the startup scan).  One file per
 * message, named by its ID:
 *
 *   [0, 32)        "hfspool 1 slot=XXXXXXXX" (S, 8 hex digits), spaces, '\n'
 *   [32, 32+S)     envelope slot 0
 *   [32+S, 32+2S)  envelope slot 1
 *   [32+2S, EOF)   the body, as it will be sent
 *
 * A slot is "env SEQ LEN HASH\n" (16, 8 and 16 hex digits; HASH the
 * FNV-1a 64 of "env SEQ LEN " and the text) and LEN bytes of envelope
 * text; the envelope is the valid slot with the higher SEQ.  A rewrite
 * fills the other slot in place, so a torn write leaves the old envelope;
 * one that does not fit rebuilds the file and renames it over.  Message
 * directories of the old format (body and env files) are converted by the
 * startup scan.  spool owns IDs,
 * create/commit/abort, atomic envelope rewrites, body reads, moves, deletes,
 * the startup scan and the durability sequence.  It knows nothing of SMTP,
 * timers or retry policy.  Functions return 0 or -1 with errno set, and log
 * the failed operation with the message ID themselves (the caller logs only
 * the consequence).
 *
 * Threads: spool_msg_commit(), spool_env_write(), spool_move() and
 * spool_delete() may run on a worker thread; they touch only their own
 * message's files and the fixed directory fds, which is safe concurrently.
 * So may the readers spool_list() and spool_env_read() (a selection is
 * matched off the loop).
 */
#ifndef HOLDFAST_SPOOL_H
#define HOLDFAST_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define SPOOL_ID_LEN 16

enum spool_area {
	SPOOL_TMP,
	SPOOL_QUEUE,
	SPOOL_HOLD,
	SPOOL_DEAD,
	SPOOL_QUARANTINE,
	SPOOL_NAREAS,
};

struct spool;
struct spool_msg;

/*
 * Open (creating if needed, mode 0700) the spool at dir and lock it: an
 * exclusive flock on dir/lock, taken before anything in the spool is read
 * or changed and held until spool_close(); a second opener fails with
 * EWOULDBLOCK and a warning naming the holder's PID.  Areas are opened
 * without following symlinks.  NULL on error (logged).
 */
struct spool *spool_open(const char *dir);
/*
 * The same for a root start that will drop to uid:gid: dir must be an
 * absolute path whose every ancestor is root's and writable by no one
 * else (or sticky), reached without symlinks; the spool directory and
 * every area must be root's or uid's, not group/world writable, and are
 * handed to uid:gid through their fds.  Nothing is purged or scanned.
 */
struct spool *spool_open_owned(const char *dir, uid_t uid, gid_t gid);
/* Open an existing spool without creating or changing anything (for the
 * CLI's read-only view).  NULL with errno, not logged. */
struct spool *spool_open_readonly(const char *dir);
void spool_close(struct spool *sp);
/* Call cb for every message ID in area (read-only).  0 or -1. */
int spool_list(struct spool *sp, enum spool_area area,
    void (*cb)(void *arg, const char *id), void *arg);
/* The area that holds message id: 0, or -1 (ENOENT, EINVAL). */
int spool_find(struct spool *sp, const char *id, enum spool_area *area);
/* Small durable state files at the spool's top (e.g. "hold-mode"):
 * written atomically, read into buf (NUL-terminated, truncated), removed.
 * 0 or -1 with errno (ENOENT when absent); a symlink, FIFO or anything
 * else that is not a regular file is not read, but logged and -1. */
int spool_state_write(struct spool *sp, const char *name, const char *text);
int spool_state_read(struct spool *sp, const char *name, char *buf,
    size_t buflen);
int spool_state_remove(struct spool *sp, const char *name);
/* A timed on/off state (hold-mode, pause-smtp) as "since until": until 0
 * removes the file.  Load: 0, or -1 with ENOENT (off), EBADMSG (not two
 * times with 0 < since <= until: the caller warns and treats it as off) or
 * another errno from spool_state_read (already logged there). */
int spool_state_span_store(struct spool *sp, const char *name, time_t since,
    time_t until);
int spool_state_span_load(struct spool *sp, const char *name, time_t *since,
    time_t *until);
const char *spool_area_name(enum spool_area area);
const char *spool_dir(const struct spool *sp);

/*
 * Start a message: a fresh random ID and the file tmp/<id>.  NULL on
 * error.  The caller owns the handle until spool_msg_commit() or
 * spool_msg_abort() consumes it.  A new ID is one no message in queue/,
 * hold/, dead/ or quarantine/ has: looked up there, or asked of the index
 * set by spool_set_id_index() (which does not know quarantine/).
 */
struct spool_msg *spool_msg_new(struct spool *sp);
/*
 * The index that knows every ID in queue/, hold/ and dead/ (the queue's,
 * on the loop thread): taken(arg, id) is 1 if id is one of them, 0 if not,
 * -1 if it cannot tell yet (still loading).  spool_msg_new(), which runs on
 * the same thread, then looks the ID up in no area (four lookups a
 * message); a quarantined file of the same name gets a suffix if the new
 * message is ever quarantined too.  A message file is never renamed over
 * another of the same name in any case: publishing and moves refuse an
 * existing name (EEXIST).
 */
void spool_set_id_index(struct spool *sp,
    int (*taken)(void *arg, const char *id), void *arg);
const char *spool_msg_id(const struct spool_msg *msg);
/* Bytes written so far. */
uint64_t spool_msg_size(const struct spool_msg *msg);
/*
 * Append to the body (buffered).  -1 with errno on error; after an error
 * every later write fails with the same errno, so the caller may keep
 * feeding and check once.
 */
int spool_msg_write(struct spool_msg *msg, const void *buf, size_t len);
/*
 * Make the message durable: flush the body, write the header and the
 * envelope, fsync the file, rename tmp/<id> to queue/<id> (or the
 * spool_msg_link() destination), fsync that directory.
 * On failure tmp/<id> is removed.  Either way the handle is
 * consumed.  Never retries an fsync.  May run on a worker thread.
 */
int spool_msg_commit(struct spool_msg *msg, const char *env, size_t envlen);
/*
 * The same commit for a batch of messages, sharing the expensive part:
 * spool_msg_stage() each (body flushed, envelope written, nothing durable yet;
 * on failure the handle is consumed), then one spool_sync() (syncfs of
 * the spool's filesystem: every staged file and directory entry durable;
 * on failure abort every staged handle), then spool_msg_publish() each
 * (rename into queue/, fsync of queue/ shared with concurrent commits;
 * consumes the handle either way).  May run on a worker thread.
 */
int spool_msg_stage(struct spool_msg *msg, const char *env, size_t envlen);
int spool_sync(struct spool *sp);
/*
 * After a good spool_sync(): whether msg is durable, i.e. no sync failed
 * since msg was created (syncfs tells a write error to one caller only,
 * so another batch's failure may have been this message's).  A false one
 * must be aborted, never published.
 */
bool spool_msg_is_synced(const struct spool_msg *msg);
int spool_msg_publish(struct spool_msg *msg);
/*
 * Publish a staged batch: rename each into its destination, then one
 * fsync of each destination directory (shared with concurrent batches)
 * covers them all.  errs[i] is 0 or the errno of msgs[i]'s failure (a
 * failed fsync fails every rename it may have covered: that message is
 * removed again).  Every handle is consumed and its slot set to NULL.
 * Returns how many were published.  May run on a worker thread.
 */
size_t spool_msg_publish_many(struct spool *sp, struct spool_msg **msgs,
    size_t n, int *errs);

/*
 * Start a copy of <area>/<id> under a fresh ID (the body is copied, in the
 * kernel where it can, when the copy is staged); spool_msg_commit() then
 * puts it in dest (not queue/).
 * Used to split refused recipients off into dead/.  NULL on error.
 */
struct spool_msg *spool_msg_link(struct spool *sp, enum spool_area area,
    const char *id, enum spool_area dest);
/* Discard a message being received; the handle is consumed. */
void spool_msg_abort(struct spool_msg *msg);

/* Atomically replace <area>/<id>'s envelope: the slot not in use, then
 * fdatasync; or, if it does not fit, a rebuilt file renamed over it and
 * the area fsync'd.  EFBIG over 1 MB. */
int spool_env_write(struct spool *sp, enum spool_area area, const char *id,
    const char *env, size_t envlen);
/* Read <area>/<id>'s envelope into a new buffer (caller frees),
 * NUL-terminated; EBADMSG if neither slot is valid. */
int spool_env_read(struct spool *sp, enum spool_area area, const char *id,
    char **env, size_t *envlen);
/* Open <area>/<id> read-only, positioned at its body (read it to EOF);
 * returns the fd or -1. */
int spool_body_open(struct spool *sp, enum spool_area area, const char *id);
/* Move a message between areas durably (fsync both parents). */
int spool_move(struct spool *sp, const char *id, enum spool_area from,
    enum spool_area to);
/* Delete a message (unlink; fsync the parent). */
int spool_delete(struct spool *sp, enum spool_area area, const char *id);
/*
 * The same for a batch, one fsync of each directory for all: move ids[0..n)
 * from one area to another; delete ids[i] from areas[i].  errs[i] is 0 or
 * the errno of ids[i]'s failure (a failed fsync fails every rename it
 * covered: the message may be in its new place, not durably).  Returns how
 * many succeeded.  May run on a worker thread.
 */
size_t spool_move_many(struct spool *sp, const char *const *ids, size_t n,
    enum spool_area from, enum spool_area to, int *errs);
size_t spool_delete_many(struct spool *sp, const enum spool_area *areas,
    const char *const *ids, size_t n, int *errs);

/*
 * Startup scan: remove everything in tmp/ (interrupted receipts), then call
 * cb for every message in queue/, hold/ and dead/ (converting old-format
 * directories first).  If cb returns
 * -1 the message is unreadable and is moved to quarantine/ (never deleted)
 * with a warning.  Entries that are not message files (bad names,
 * symlinks, old-format directories missing a file) are quarantined too.  Returns the number of messages cb accepted, or -1.
 */
int spool_scan(struct spool *sp,
    int (*cb)(void *arg, enum spool_area area, const char *id), void *arg);
/*
 * The same scan in two steps, so that it can run in slices while the
 * daemon serves (queue_load): spool_scan_list() purges tmp/ and calls cb
 * with every name in queue/, hold/ and dead/ (nothing else is read);
 * spool_scan_one() then checks one of them and hands it to cb, or
 * quarantines it as spool_scan() does.  0 (cb accepted it) or -1.
 */
int spool_scan_list(struct spool *sp,
    void (*cb)(void *arg, enum spool_area area, const char *name), void *arg);
int spool_scan_one(struct spool *sp, enum spool_area area, const char *name,
    int (*cb)(void *arg, enum spool_area area, const char *id), void *arg);

/* Whether a directory stat'ed on the way to the spool may be trusted by
 * a root start (pure; see spool_open_owned): SPOOL_OK or why not. */
enum spool_dir_role {
	SPOOL_DIR_ANCESTOR,	/* above the spool: root's, or sticky */
	SPOOL_DIR_SPOOL,	/* the spool or an area: root's or owner's */
};
enum {
	SPOOL_OK = 0,
	SPOOL_BAD_TYPE = -1,
	SPOOL_BAD_OWNER = -2,
	SPOOL_BAD_MODE = -3,
};
struct stat;
int spool_stat_check(const struct stat *st, enum spool_dir_role role,
    uid_t owner);
/* An fsync has failed with EIO since the spool was opened: nothing new
 * should be promised on it (see spool_fsync in spool.c). */
bool spool_is_suspect(struct spool *sp);

/* Free bytes on the spool's filesystem (for status and metrics); -1. */
int64_t spool_free_bytes(struct spool *sp);

#endif
