/*
 * Optional C implementations of two hot paths of the sans-I/O core.
 *
 * - Payload masking (RFC 6455 5.3). Masking XORs every payload byte with one byte
 *   of a 4-byte key, repeated. The pure-Python implementation in framing.py costs
 *   about 1.5 ms per MiB; this one XORs eight bytes at a time and is some thirty
 *   times faster.
 * - Building a whole frame (header, masking key, payload) in one allocation.
 * - Parsing runs of small, unfragmented, uncompressed data frames (the messages of
 *   chat, ticks and requests), which Protocol._parse otherwise does frame by frame
 *   in Python. Any other frame is left to the Python parser.
 * - Reader: the get_buffer()/buffer_updated() pair of a buffered asyncio protocol,
 *   called by the transport on every read (see Reader below), and the read lane:
 *   a read of whole small messages queued or delivered without the Python calls
 *   in between (see lane_read); the send lane writes a server's text message the
 *   same way (see send_lane).
 *
 * The package works without it: setup.py builds it only where a C compiler is
 * available, and the Python code gives the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* Payloads at least this long are masked without holding the GIL. */
#define RELEASE_GIL_AT (64 * 1024)

/* XOR n bytes of src into dst with the key, key byte 0 at src[0]. */
static void
xor_mask(unsigned char *dst, const unsigned char *src, Py_ssize_t n, const unsigned char *key)
{
    unsigned char k8[8];
    uint64_t k64, v;
    Py_ssize_t i = 0;

    for (int j = 0; j < 8; j++) {
        k8[j] = key[j & 3];
    }
    memcpy(&k64, k8, 8);
    for (; i + 8 <= n; i += 8) {
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++) {
        dst[i] = src[i] ^ k8[i & 7];
    }
}

static int
get_key(PyObject *obj, Py_buffer *key)
{
    if (PyObject_GetBuffer(obj, key, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (key->len != 4) {
        PyBuffer_Release(key);
        PyErr_SetString(PyExc_ValueError, "the masking key must be 4 bytes long");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, key, /)\n--\n\n"
"Return ``data`` (any contiguous bytes-like object) XORed with the repeated\n"
"4-byte ``key``, as new ``bytes``. Raises ValueError if ``key`` is not 4 bytes.");

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, key;
    PyObject *result;

    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_mask() takes exactly 2 arguments");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    if (get_key(args[1], &key) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result != NULL) {
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
        if (data.len >= RELEASE_GIL_AT) {
            Py_BEGIN_ALLOW_THREADS
            xor_mask(dst, data.buf, data.len, key.buf);
            Py_END_ALLOW_THREADS
        }
        else {
            xor_mask(dst, data.buf, data.len, key.buf);
        }
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

PyDoc_STRVAR(mask_into_doc,
"mask_into(buffer, start, key, end=None, /)\n--\n\n"
"XOR ``buffer[start:end]`` in place with the repeated 4-byte ``key``, key byte 0\n"
"at ``start``. ``buffer`` is a writable contiguous bytes-like object (a\n"
"bytearray); ``end`` defaults to its length. Raises ValueError for a key that is\n"
"not 4 bytes or a range outside the buffer.");

static PyObject *
mask_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer buf, key;
    Py_ssize_t start, end;

    if (nargs < 3 || nargs > 4) {
        PyErr_SetString(PyExc_TypeError, "mask_into() takes 3 or 4 arguments");
        return NULL;
    }
    start = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &buf, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    end = buf.len;
    if (nargs == 4 && args[3] != Py_None) {
        end = PyNumber_AsSsize_t(args[3], PyExc_OverflowError);
        if (end == -1 && PyErr_Occurred()) {
            PyBuffer_Release(&buf);
            return NULL;
        }
    }
    if (start < 0 || end < start || end > buf.len) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "the range to mask is outside the buffer");
        return NULL;
    }
    if (get_key(args[2], &key) < 0) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    unsigned char *p = (unsigned char *)buf.buf + start;
    if (end - start >= RELEASE_GIL_AT) {
        /* The buffer export keeps a bytearray from being resized meanwhile. */
        Py_BEGIN_ALLOW_THREADS
        xor_mask(p, p, end - start, key.buf);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(p, p, end - start, key.buf);
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(parse_small_doc,
"parse_small(buf, i, masked, small, messages, max_messages, /)\n--\n\n"
"Parse the small data frames that start at ``buf[i]`` (``buf`` is ``bytes``).\n\n"
"Takes, one after the other, complete frames with FIN set, no RSV bit, opcode\n"
"text or binary, a payload shorter than ``small`` (at most 126) bytes and the\n"
"mask bit equal to ``masked``; appends each message (``str`` for text, validated\n"
"UTF-8; ``bytes`` for binary) to the list ``messages``. Stops at the first frame\n"
"that is anything else (incomplete, larger, a control frame, invalid UTF-8...),\n"
"or once ``messages`` holds ``max_messages`` (when not negative) messages, and\n"
"returns the position after the last frame taken (``i`` if none was).");

static PyObject *
parse_small(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *buf, *messages, *message;
    Py_ssize_t i, small, max_messages, n;
    int masked;
    unsigned char unmasked[128];

    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "parse_small() takes exactly 6 arguments");
        return NULL;
    }
    buf = args[0];
    messages = args[4];
    if (!PyBytes_Check(buf) || !PyList_Check(messages)) {
        PyErr_SetString(PyExc_TypeError, "parse_small() takes bytes and a list");
        return NULL;
    }
    i = PyLong_AsSsize_t(args[1]);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    masked = PyObject_IsTrue(args[2]);
    if (masked < 0) {
        return NULL;
    }
    small = PyLong_AsSsize_t(args[3]);
    if (small == -1 && PyErr_Occurred()) {
        return NULL;
    }
    max_messages = PyLong_AsSsize_t(args[5]);
    if (max_messages == -1 && PyErr_Occurred()) {
        return NULL;
    }
    n = PyBytes_GET_SIZE(buf);
    if (i < 0 || i > n) {
        PyErr_SetString(PyExc_ValueError, "parse_small(): position outside the buffer");
        return NULL;
    }
    if (small > 126) {
        small = 126;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(buf);
    while (n - i >= 2) {
        unsigned char first = data[i], second = data[i + 1];
        Py_ssize_t length = second & 0x7F;
        Py_ssize_t head = i + (masked ? 6 : 2);
        if ((first != 0x81 && first != 0x82) || ((second & 0x80) != 0) != (masked != 0)
            || length >= small || head + length > n) {
            break;
        }
        const unsigned char *payload = data + head;
        if (masked) {
            const unsigned char *key = data + i + 2;
            xor_mask(unmasked, payload, length, key);
            payload = unmasked;
        }
        if (first == 0x81) {
            message = PyUnicode_DecodeUTF8((const char *)payload, length, NULL);
            if (message == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    return NULL;
                }
                /* Left to the Python parser, which reports it. */
                PyErr_Clear();
                break;
            }
        }
        else {
            message = PyBytes_FromStringAndSize((const char *)payload, length);
            if (message == NULL) {
                return NULL;
            }
        }
        if (PyList_Append(messages, message) < 0) {
            Py_DECREF(message);
            return NULL;
        }
        Py_DECREF(message);
        i = head + length;
        if (max_messages >= 0 && PyList_GET_SIZE(messages) >= max_messages) {
            break;
        }
    }
    return PyLong_FromSsize_t(i);
}

PyDoc_STRVAR(build_frame_doc,
"build_frame(first, payload, key, /)\n--\n\n"
"Return one whole frame: the first byte ``first`` (FIN, RSV bits, opcode), the\n"
"payload length, then ``key`` and the payload masked with it when ``key`` (4\n"
"bytes) is not ``None``, else the payload as it is. ``payload`` is a ``str``\n"
"(sent as UTF-8) or a contiguous bytes-like object.");

static PyObject *
build_frame(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view, key;
    PyObject *encoded = NULL, *result = NULL;
    const unsigned char *payload;
    Py_ssize_t n;
    long first;
    int have_view = 0, masked;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "build_frame() takes exactly 3 arguments");
        return NULL;
    }
    first = PyLong_AsLong(args[0]);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (first < 0 || first > 255) {
        PyErr_SetString(PyExc_ValueError, "the first byte must be between 0 and 255");
        return NULL;
    }
    masked = args[2] != Py_None;
    if (masked && get_key(args[2], &key) < 0) {
        return NULL;
    }
    if (PyUnicode_Check(args[1])) {
#if PY_VERSION_HEX < 0x030C0000
        /* Before 3.12 a str may still need its canonical form made. */
        if (PyUnicode_READY(args[1]) < 0) {
            goto done;
        }
#endif
        if (PyUnicode_IS_ASCII(args[1])) {
            /* ASCII is its own UTF-8: no encoding step. */
            payload = PyUnicode_DATA(args[1]);
            n = PyUnicode_GET_LENGTH(args[1]);
        }
        else {
            encoded = PyUnicode_AsUTF8String(args[1]);
            if (encoded == NULL) {
                goto done;
            }
            payload = (const unsigned char *)PyBytes_AS_STRING(encoded);
            n = PyBytes_GET_SIZE(encoded);
        }
    }
    else if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) == 0) {
        have_view = 1;
        payload = view.buf;
        n = view.len;
    }
    else {
        /* A non-contiguous buffer (a strided memoryview): copy it first. */
        if (!PyErr_ExceptionMatches(PyExc_BufferError)) {
            goto done;
        }
        PyErr_Clear();
        encoded = PyBytes_FromObject(args[1]);
        if (encoded == NULL) {
            goto done;
        }
        payload = (const unsigned char *)PyBytes_AS_STRING(encoded);
        n = PyBytes_GET_SIZE(encoded);
    }
    Py_ssize_t head = n < 126 ? 2 : (n < 65536 ? 4 : 10);
    result = PyBytes_FromStringAndSize(NULL, head + (masked ? 4 : 0) + n);
    if (result == NULL) {
        goto done;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    unsigned char mask_bit = masked ? 0x80 : 0;
    out[0] = (unsigned char)first;
    if (n < 126) {
        out[1] = mask_bit | (unsigned char)n;
    }
    else if (n < 65536) {
        out[1] = mask_bit | 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)n;
    }
    else {
        out[1] = mask_bit | 127;
        uint64_t length = (uint64_t)n;
        for (int k = 0; k < 8; k++) {
            out[2 + k] = (unsigned char)(length >> (56 - 8 * k));
        }
    }
    out += head;
    if (masked) {
        memcpy(out, key.buf, 4);
        out += 4;
    }
    /* The payload's buffer is held (a buffer export, or a reference to an
       immutable object): another thread may run meanwhile. */
    if (n >= RELEASE_GIL_AT) {
        Py_BEGIN_ALLOW_THREADS
        if (masked) {
            xor_mask(out, payload, n, key.buf);
        }
        else {
            memcpy(out, payload, n);
        }
        Py_END_ALLOW_THREADS
    }
    else if (masked) {
        xor_mask(out, payload, n, key.buf);
    }
    else {
        memcpy(out, payload, n);
    }
done:
    if (have_view) {
        PyBuffer_Release(&view);
    }
    Py_XDECREF(encoded);
    if (masked) {
        PyBuffer_Release(&key);
    }
    return result;
}


/*
 * Reader: lends a transport one read buffer and hands each read on.
 *
 * The base of the asyncio engine's buffered protocol. get_buffer() lends the
 * buffer given to _use_buffer() (shared by the connections of a thread), or, while
 * the lender (`_lender`, the connection's Protocol) has `lending` set, the buffer
 * its receive_buffer() returns. buffer_updated(nbytes) then calls
 * `_on_direct(nbytes)` after a read into a lent buffer, else `_on_data(bytes)`
 * with a copy of the bytes read (the data_received() method while `_on_data` is
 * None). The Python class _PyReader in the asyncio engine
 * does the same.
 */
typedef struct {
    PyObject_HEAD
    Py_buffer buffer;     /* the shared buffer; buffer.obj is NULL until set */
    PyObject *view;       /* what get_buffer() lends */
    PyObject *on_data;
    PyObject *on_direct;
    PyObject *lender;
    int direct;           /* the last buffer lent was the lender's */
    PyObject *lane;       /* the connection, for lane_read(); NULL or None: none */
} Reader;

static PyObject *str_lending;
static PyObject *str_receive_buffer;
static PyObject *str_data_received;

static int
Reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->view);
    Py_VISIT(self->on_data);
    Py_VISIT(self->on_direct);
    Py_VISIT(self->lender);
    Py_VISIT(self->lane);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int
Reader_clear(Reader *self)
{
    Py_CLEAR(self->view);
    Py_CLEAR(self->on_data);
    Py_CLEAR(self->on_direct);
    Py_CLEAR(self->lender);
    Py_CLEAR(self->lane);
    return 0;
}

static void
Reader_dealloc(Reader *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->buffer.obj != NULL) {
        PyBuffer_Release(&self->buffer);
    }
    Reader_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
Reader_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Reader *self = (Reader *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->on_data = Py_NewRef(Py_None);
    self->on_direct = Py_NewRef(Py_None);
    self->lender = Py_NewRef(Py_None);
    return (PyObject *)self;
}

PyDoc_STRVAR(Reader_use_buffer_doc,
"_use_buffer(view, /)\n--\n\n"
"Lend ``view`` (a writable, contiguous memoryview that outlives the reader) to\n"
"the transport from now on.");

static PyObject *
Reader_use_buffer(Reader *self, PyObject *view)
{
    Py_buffer buffer;
    if (PyObject_GetBuffer(view, &buffer, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        return NULL;
    }
    if (self->buffer.obj != NULL) {
        PyBuffer_Release(&self->buffer);
    }
    self->buffer = buffer;
    Py_XSETREF(self->view, Py_NewRef(view));
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Reader_get_buffer_doc,
"get_buffer(sizehint, /)\n--\n\n"
"Return the buffer the transport reads into next (asyncio.BufferedProtocol).");

static PyObject *
Reader_get_buffer(Reader *self, PyObject *sizehint)
{
    /* (A deleted member is NULL: it counts as None.) */
    if (self->lender != NULL && self->lender != Py_None) {
        PyObject *lending = PyObject_GetAttr(self->lender, str_lending);
        if (lending == NULL) {
            return NULL;
        }
        int yes = PyObject_IsTrue(lending);
        Py_DECREF(lending);
        if (yes < 0) {
            return NULL;
        }
        if (yes) {
            PyObject *direct = PyObject_CallMethodNoArgs(self->lender, str_receive_buffer);
            if (direct == NULL) {
                return NULL;
            }
            if (direct != Py_None) {
                self->direct = 1;
                return direct;
            }
            Py_DECREF(direct);
        }
    }
    self->direct = 0;
    if (self->view == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "no read buffer: call _use_buffer() first");
        return NULL;
    }
    return Py_NewRef(self->view);
}

/*
 * The read lane.
 *
 * A small message costs most of its time in Python calls: the connection's read
 * (_data_received), the session's step (Session.feed), the protocol's entry to
 * the parser (Protocol.receive_data), then either the delivery to callbacks
 * (_dispatch, for a MessageHandler) or waking the tasks waiting in receive() or
 * `async for`. For one common case, lane_read() does what those do, reading and
 * writing their objects' slots directly:
 *
 * - the connection is open and its transport is ours (no blocked-write hook); with
 *   callbacks, they are running (on_open was called, no delivery is under way);
 * - the session has nothing pending: reading not paused, close() not called, no
 *   pong unseen, nothing to write, no pong held back; with callbacks, no message
 *   queued;
 * - the protocol is open and not failed, with nothing buffered from an earlier
 *   read, no fragmented message under way and no compression;
 * - the read holds nothing but whole small data frames (the ones parse_small
 *   takes), at least one, and too few to fill the inbox (which would pause
 *   reading).
 *
 * Anything else, checked before any state is touched, goes to the Python path
 * (the reference, which the tests compare this with). The slots are found once,
 * by bind_lane(), from the classes' member descriptors; their offsets hold for
 * subclasses, and every object's type is checked before its slots are read.
 */

enum {
    C_SESSION, C_LISTENER, C_LISTENER_STATE, C_DISPATCHING, C_BLOCKED_HOOK, C_BURST,
    C_WRITE_PAUSED, C_WAITERS, C_INBOX, C_COALESCED, C_TRANSPORT, C_COUNT
};
static const char *conn_slots[C_COUNT] = {
    "_session", "_listener", "_listener_state", "_dispatching", "_blocked_hook", "_burst",
    "_write_paused", "_waiters", "_inbox", "_coalesced", "_transport",
};
enum { S_PROTOCOL, S_INBOX, S_PONGS_SEEN, S_COUNT };
static const char *session_slots[S_COUNT] = {"protocol", "inbox", "_pongs_seen"};
enum {
    P_STATE, P_FAILED, P_RBUF, P_PARTIAL, P_FAST_PATH, P_FAST_DEFLATE, P_MAX_MESSAGE_SIZE,
    P_CLIENT, P_PONGS_RECEIVED, P_OUTPUT_READY, P_PONG_HELD, P_DEFER_PONGS, P_STALLED,
    P_KEYS, P_KEY_POS, P_COUNT
};
static const char *protocol_slots[P_COUNT] = {
    "state", "failed", "_rbuf", "_partial", "fast_path", "_fast_deflate",
    "max_message_size", "client", "pongs_received", "output_ready", "pong_held",
    "defer_pongs", "_stalled", "_keys", "_key_pos",
};
enum { I_MESSAGES, I_CLOSE_CALLED, I_PAUSED, I_MAX_QUEUE, I_FINISHED, I_COUNT };
static const char *inbox_slots[I_COUNT] = {
    "messages", "close_called", "paused", "max_queue", "finished",
};

static struct {
    int bound;
    PyTypeObject *conn_type, *session_type, *protocol_type, *inbox_type, *deque_type;
    PyObject *open_state;       /* State.OPEN */
    long open_called;           /* the connection's _listener_state once on_open ran */
    Py_ssize_t conn[C_COUNT], session[S_COUNT], protocol[P_COUNT], inbox[I_COUNT];
} lane;

static PyObject *str_on_message;
static PyObject *str_dispatch;
static PyObject *str_callback_failed;
static PyObject *str_extend;
static PyObject *str_done;
static PyObject *str_set_result;
static PyObject *str_is_closing;
static PyObject *str_write;

/* The slot at offset `off` of `obj`: a borrowed reference, NULL when unset. */
#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static void
set_slot(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    PyObject **slot = (PyObject **)((char *)obj + off);
    PyObject *old = *slot;
    *slot = Py_NewRef(value);
    Py_XDECREF(old);
}

/* Find the offsets of `names` in `cls`: each must be a slot (member descriptor). */
static int
find_slots(PyObject *cls, const char **names, Py_ssize_t *offsets, int count)
{
    for (int k = 0; k < count; k++) {
        PyObject *descr = PyObject_GetAttrString(cls, names[k]);
        if (descr == NULL) {
            return -1;
        }
        if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX
            || !PyType_IsSubtype((PyTypeObject *)cls,
                                 ((PyMemberDescrObject *)descr)->d_common.d_type)) {
            PyErr_Format(PyExc_TypeError, "%R.%s is not an object slot", cls, names[k]);
            Py_DECREF(descr);
            return -1;
        }
        offsets[k] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
    }
    return 0;
}

PyDoc_STRVAR(bind_lane_doc,
"bind_lane(connection, session, protocol, inbox, deque, open_state, open_called, /)\n--\n\n"
"Find the slots the read and send lanes use in the four classes (see lane_read in\n"
"_speedups.c); ``deque`` is the inbox's queue type, ``open_state`` the protocol's\n"
"open state and ``open_called`` the connection's listener state once ``on_open``\n"
"ran. Raises AttributeError or TypeError if a slot is missing or not an object\n"
"slot; the lane then stays as it was.");

static PyObject *
bind_lane(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "bind_lane() takes exactly 7 arguments");
        return NULL;
    }
    for (int k = 0; k < 5; k++) {
        if (!PyType_Check(args[k])) {
            PyErr_SetString(PyExc_TypeError, "bind_lane() takes five classes first");
            return NULL;
        }
    }
    long open_called = PyLong_AsLong(args[6]);
    if (open_called == -1 && PyErr_Occurred()) {
        return NULL;
    }
    /* (A failure leaves the lane as it was.) */
    Py_ssize_t conn[C_COUNT], session[S_COUNT], protocol[P_COUNT], inbox[I_COUNT];
    if (find_slots(args[0], conn_slots, conn, C_COUNT) < 0
        || find_slots(args[1], session_slots, session, S_COUNT) < 0
        || find_slots(args[2], protocol_slots, protocol, P_COUNT) < 0
        || find_slots(args[3], inbox_slots, inbox, I_COUNT) < 0) {
        return NULL;
    }
    memcpy(lane.conn, conn, sizeof(conn));
    memcpy(lane.session, session, sizeof(session));
    memcpy(lane.protocol, protocol, sizeof(protocol));
    memcpy(lane.inbox, inbox, sizeof(inbox));
    Py_XSETREF(lane.conn_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(lane.session_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(lane.protocol_type, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(lane.inbox_type, (PyTypeObject *)Py_NewRef(args[3]));
    Py_XSETREF(lane.deque_type, (PyTypeObject *)Py_NewRef(args[4]));
    Py_XSETREF(lane.open_state, Py_NewRef(args[5]));
    lane.open_called = open_called;
    lane.bound = 1;
    Py_RETURN_NONE;
}

/* The message size limit as parse_small's `small`: frames shorter are taken. */
static int
small_limit(PyObject *limit, Py_ssize_t *small)
{
    if (limit == Py_None) {
        *small = 126;
        return 0;
    }
    if (!PyLong_CheckExact(limit)) {
        return -1;
    }
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(limit, &overflow);
    if (overflow > 0 || (overflow == 0 && value > 124)) {
        *small = 126;
        return 0;
    }
    if (overflow < 0 || value < 0) {
        return -1;
    }
    *small = (Py_ssize_t)value + 1;
    return 0;
}

/* End the delivery of one message by `conn`'s listener: what _dispatch() does
 * after its loop (the except clauses, then the checks after it). */
static int
lane_after_callback(PyObject *conn, PyObject *inbox, int failed)
{
    if (failed) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            /* (KeyboardInterrupt, SystemExit, CancelledError: not caught there
             * either.) */
            set_slot(conn, lane.conn[C_DISPATCHING], Py_False);
            return -1;
        }
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb != NULL) {
            PyException_SetTraceback(value, tb);
        }
        PyObject *result = PyObject_CallMethodOneArg(conn, str_callback_failed, value);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        set_slot(conn, lane.conn[C_DISPATCHING], Py_False);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
    }
    else {
        set_slot(conn, lane.conn[C_DISPATCHING], Py_False);
    }
    PyObject *messages = SLOT(inbox, lane.inbox[I_MESSAGES]);
    PyObject *finished = SLOT(inbox, lane.inbox[I_FINISHED]);
    PyObject *hook = SLOT(conn, lane.conn[C_BLOCKED_HOOK]);
    Py_ssize_t queued = messages == NULL ? 1 : PyObject_Length(messages);
    if (queued < 0) {
        return -1;
    }
    if (failed || queued || finished != Py_False || hook != Py_None) {
        /* The rest of _dispatch(): it delivers what was queued meanwhile, pauses
         * reading for a blocked foreign transport, calls on_close once the inbox
         * is finished, and ends a delivery that failed. */
        PyObject *result = PyObject_CallMethodNoArgs(conn, str_dispatch);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
    }
    return 0;
}

/* Queue the messages of a read and wake the tasks waiting for one, as
 * _data_received() does for a connection read with receive() or `async for`. */
static int
lane_wake(PyObject *conn, PyObject *messages, PyObject *parsed, PyObject *waiters)
{
    PyObject *result = PyObject_CallMethodOneArg(messages, str_extend, parsed);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    if (PyList_GET_SIZE(waiters) == 0) {
        return 0;
    }
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) {
        return -1;
    }
    Py_INCREF(waiters);
    set_slot(conn, lane.conn[C_WAITERS], fresh);
    Py_DECREF(fresh);
    int status = 0;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(waiters); k++) {
        PyObject *waiter = PyList_GET_ITEM(waiters, k);
        Py_INCREF(waiter);
        PyObject *done = PyObject_CallMethodNoArgs(waiter, str_done);
        int yes = done == NULL ? -1 : PyObject_IsTrue(done);
        Py_XDECREF(done);
        if (yes == 0) {
            result = PyObject_CallMethodOneArg(waiter, str_set_result, Py_None);
            yes = result == NULL ? -1 : 0;
            Py_XDECREF(result);
        }
        Py_DECREF(waiter);
        if (yes < 0) {
            status = -1;
            break;
        }
    }
    Py_DECREF(waiters);
    return status;
}

/* Deliver a read as _data_received() would, if it is a case the lane takes.
 * Returns 1 when done, 0 when the read is for the Python path (nothing was
 * changed), -1 with an exception set. */
static int
lane_read(PyObject *conn, PyObject *data)
{
    if (!lane.bound || !PyObject_TypeCheck(conn, lane.conn_type)) {
        return 0;
    }
    PyObject *session = SLOT(conn, lane.conn[C_SESSION]);
    PyObject *listener = SLOT(conn, lane.conn[C_LISTENER]);
    PyObject *state = SLOT(conn, lane.conn[C_LISTENER_STATE]);
    PyObject *write_paused = SLOT(conn, lane.conn[C_WRITE_PAUSED]);
    PyObject *waiters = SLOT(conn, lane.conn[C_WAITERS]);
    if (session == NULL || !Py_IS_TYPE(session, lane.session_type) || listener == NULL
        || SLOT(conn, lane.conn[C_BLOCKED_HOOK]) != Py_None
        || (write_paused != Py_False && write_paused != Py_True)) {
        return 0;
    }
    int callbacks = listener != Py_None;
    if (callbacks) {
        if (state == NULL || !PyLong_CheckExact(state)) {
            return 0;
        }
        int overflow;
        long listener_state = PyLong_AsLongAndOverflow(state, &overflow);
        if (overflow || listener_state != lane.open_called
            || SLOT(conn, lane.conn[C_DISPATCHING]) != Py_False) {
            return 0;
        }
    }
    else if (waiters == NULL || !PyList_CheckExact(waiters)) {
        return 0;
    }
    PyObject *proto = SLOT(session, lane.session[S_PROTOCOL]);
    PyObject *inbox = SLOT(session, lane.session[S_INBOX]);
    if (proto == NULL || !Py_IS_TYPE(proto, lane.protocol_type) || inbox == NULL
        || !Py_IS_TYPE(inbox, lane.inbox_type)) {
        return 0;
    }
    PyObject *rbuf = SLOT(proto, lane.protocol[P_RBUF]);
    PyObject *client = SLOT(proto, lane.protocol[P_CLIENT]);
    PyObject *pongs = SLOT(proto, lane.protocol[P_PONGS_RECEIVED]);
    PyObject *pongs_seen = SLOT(session, lane.session[S_PONGS_SEEN]);
    if (SLOT(proto, lane.protocol[P_STATE]) != lane.open_state
        || SLOT(proto, lane.protocol[P_FAILED]) != Py_False
        || rbuf == NULL || !PyBytes_CheckExact(rbuf) || PyBytes_GET_SIZE(rbuf) != 0
        || SLOT(proto, lane.protocol[P_PARTIAL]) != Py_None
        || SLOT(proto, lane.protocol[P_FAST_PATH]) != Py_True
        || SLOT(proto, lane.protocol[P_FAST_DEFLATE]) != Py_None
        || SLOT(proto, lane.protocol[P_OUTPUT_READY]) != Py_False
        || SLOT(proto, lane.protocol[P_PONG_HELD]) != Py_False
        || (client != Py_True && client != Py_False)
        || pongs == NULL || pongs_seen == NULL || !PyLong_CheckExact(pongs)
        || !PyLong_CheckExact(pongs_seen)) {
        return 0;
    }
    int same = PyObject_RichCompareBool(pongs, pongs_seen, Py_EQ);
    if (same <= 0) {
        if (same < 0) {
            PyErr_Clear();
        }
        return 0;
    }
    PyObject *messages = SLOT(inbox, lane.inbox[I_MESSAGES]);
    PyObject *max_queue = SLOT(inbox, lane.inbox[I_MAX_QUEUE]);
    if (messages == NULL || !Py_IS_TYPE(messages, lane.deque_type)
        || SLOT(inbox, lane.inbox[I_CLOSE_CALLED]) != Py_False
        || SLOT(inbox, lane.inbox[I_PAUSED]) != Py_False
        || max_queue == NULL || !PyLong_CheckExact(max_queue)) {
        return 0;
    }
    Py_ssize_t queued = PyObject_Length(messages);
    if (queued < 0) {
        PyErr_Clear();
        return 0;
    }
    if (callbacks && queued != 0) {
        return 0;
    }
    Py_ssize_t room = PyLong_AsSsize_t(max_queue);
    if (room == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    /* Session.feed(): the inbox's room, at least 1; filling it pauses reading,
     * which is left to the Python path. */
    room -= queued;
    if (room < 2) {
        return 0;
    }
    Py_ssize_t small;
    if (small_limit(SLOT(proto, lane.protocol[P_MAX_MESSAGE_SIZE]), &small) < 0) {
        return 0;
    }
    /* A read longer than room - 1 of the largest small frames (2 + 4 + 125 bytes
     * masked, 2 + 125 unmasked) cannot be for the lane: not worth parsing (the
     * reads of a pipelined stream, or of a large message). */
    if (PyBytes_GET_SIZE(data) > (room - 1) * (client == Py_True ? 127 : 131)) {
        return 0;
    }

    /* Parse (touches no state). */
    PyObject *parsed = PyList_New(0);
    if (parsed == NULL) {
        return -1;
    }
    PyObject *zero = PyLong_FromSsize_t(0);
    PyObject *small_obj = PyLong_FromSsize_t(small);
    PyObject *room_obj = PyLong_FromSsize_t(room);
    PyObject *end = NULL;
    if (zero != NULL && small_obj != NULL && room_obj != NULL) {
        PyObject *parse_args[6] = {
            data, zero, client == Py_True ? Py_False : Py_True, small_obj, parsed, room_obj,
        };
        end = parse_small(NULL, parse_args, 6);
    }
    Py_XDECREF(zero);
    Py_XDECREF(small_obj);
    Py_XDECREF(room_obj);
    if (end == NULL) {
        Py_DECREF(parsed);
        return -1;
    }
    Py_ssize_t i = PyLong_AsSsize_t(end);
    Py_DECREF(end);
    Py_ssize_t count = PyList_GET_SIZE(parsed);
    if (i != PyBytes_GET_SIZE(data) || count < 1 || count >= room) {
        /* Not only whole small frames, or enough of them to fill the inbox. */
        Py_DECREF(parsed);
        return 0;
    }

    /* What _data_received() and Session.feed() set for such a read. */
    set_slot(conn, lane.conn[C_BURST], Py_False);
    set_slot(proto, lane.protocol[P_DEFER_PONGS], write_paused);
    set_slot(proto, lane.protocol[P_STALLED], Py_False);

    /* (The callbacks may drop the reader's reference to the connection.) */
    Py_INCREF(conn);
    if (!callbacks) {
        int status = lane_wake(conn, messages, parsed, waiters);
        Py_DECREF(parsed);
        Py_DECREF(conn);
        return status < 0 ? -1 : 1;
    }
    if (count > 1) {
        /* Several messages: queued, then delivered by _dispatch() itself. */
        PyObject *result = PyObject_CallMethodOneArg(messages, str_extend, parsed);
        Py_DECREF(parsed);
        if (result != NULL) {
            Py_DECREF(result);
            result = PyObject_CallMethodNoArgs(conn, str_dispatch);
        }
        Py_DECREF(conn);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 1;
    }

    /* One message: _dispatch()'s loop, once. */
    PyObject *message = Py_NewRef(PyList_GET_ITEM(parsed, 0));
    Py_DECREF(parsed);
    Py_INCREF(inbox);
    set_slot(conn, lane.conn[C_DISPATCHING], Py_True);
    PyObject *on_message = PyObject_GetAttr(listener, str_on_message);
    PyObject *result = NULL;
    if (on_message != NULL) {
        PyObject *call_args[2] = {conn, message};
        result = PyObject_Vectorcall(on_message, call_args, 2, NULL);
        Py_DECREF(on_message);
    }
    Py_DECREF(message);
    int status = lane_after_callback(conn, inbox, result == NULL);
    Py_XDECREF(result);
    Py_DECREF(inbox);
    Py_DECREF(conn);
    return status < 0 ? -1 : 1;
}

PyDoc_STRVAR(send_lane_doc,
"send_lane(connection, data, /)\n--\n\n"
"Write the text message ``data`` as ``connection.send_nowait(data)`` would, when\n"
"that is the first frame of a burst on an open, uncompressed connection with a\n"
"transport of its own, and return ``True``; otherwise do nothing and return\n"
"``False`` (the Python path then sends it).");

/* The first frame of a burst, written the way Connection.send_nowait() and
 * Protocol.send_frame() write it without compression: built in one allocation
 * (a client's masked with the next key of its protocol's key pool) and handed to
 * the transport. Everything else (binary data, compression, a burst under way, a
 * connection closing, a key pool used up) is left to the Python path. */
static PyObject *
send_lane(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send_lane() takes exactly 2 arguments");
        return NULL;
    }
    PyObject *conn = args[0], *data = args[1];
    if (!lane.bound || !PyUnicode_CheckExact(data) || !PyObject_TypeCheck(conn, lane.conn_type)) {
        Py_RETURN_FALSE;
    }
    PyObject *session = SLOT(conn, lane.conn[C_SESSION]);
    PyObject *inbox = SLOT(conn, lane.conn[C_INBOX]);
    PyObject *transport = SLOT(conn, lane.conn[C_TRANSPORT]);
    if (session == NULL || !Py_IS_TYPE(session, lane.session_type) || inbox == NULL
        || !Py_IS_TYPE(inbox, lane.inbox_type)
        || SLOT(inbox, lane.inbox[I_CLOSE_CALLED]) != Py_False
        || SLOT(conn, lane.conn[C_BURST]) != Py_False
        || SLOT(conn, lane.conn[C_COALESCED]) != Py_None || transport == NULL
        || transport == Py_None) {
        Py_RETURN_FALSE;
    }
    PyObject *proto = SLOT(session, lane.session[S_PROTOCOL]);
    PyObject *client = proto == NULL ? NULL : SLOT(proto, lane.protocol[P_CLIENT]);
    if (proto == NULL || !Py_IS_TYPE(proto, lane.protocol_type)
        || SLOT(proto, lane.protocol[P_STATE]) != lane.open_state
        || (client != Py_False && client != Py_True)
        || SLOT(proto, lane.protocol[P_FAST_PATH]) != Py_True
        || SLOT(proto, lane.protocol[P_FAST_DEFLATE]) != Py_None) {
        Py_RETURN_FALSE;
    }
    /* A client masks with the next 4 bytes of its key pool (Protocol.send_frame). */
    PyObject *keys = NULL;
    Py_ssize_t key_pos = 0;
    if (client == Py_True) {
        keys = SLOT(proto, lane.protocol[P_KEYS]);
        PyObject *pos = SLOT(proto, lane.protocol[P_KEY_POS]);
        if (keys == NULL || !PyBytes_CheckExact(keys) || pos == NULL || !PyLong_CheckExact(pos)) {
            Py_RETURN_FALSE;
        }
        key_pos = PyLong_AsSsize_t(pos);
        if (key_pos < 0 || key_pos > PyBytes_GET_SIZE(keys) - 4) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
    }
    Py_INCREF(transport);
    PyObject *closing = PyObject_CallMethodNoArgs(transport, str_is_closing);
    int yes = closing == NULL ? -1 : PyObject_IsTrue(closing);
    Py_XDECREF(closing);
    if (yes != 0) {
        Py_DECREF(transport);
        if (yes < 0) {
            return NULL;
        }
        Py_RETURN_FALSE;
    }
    PyObject *first = PyLong_FromLong(0x81);
    if (first == NULL) {
        Py_DECREF(transport);
        return NULL;
    }
    PyObject *key = Py_None, *next_pos = NULL;
    if (keys != NULL) {
        key = PyBytes_FromStringAndSize(PyBytes_AS_STRING(keys) + key_pos, 4);
        next_pos = PyLong_FromSsize_t(key_pos + 4);
        if (key == NULL || next_pos == NULL) {
            Py_XDECREF(key);
            Py_XDECREF(next_pos);
            Py_DECREF(first);
            Py_DECREF(transport);
            return NULL;
        }
    }
    PyObject *build_args[3] = {first, data, key};
    PyObject *frame = build_frame(NULL, build_args, 3);
    Py_DECREF(first);
    if (keys != NULL) {
        Py_DECREF(key);
        if (frame != NULL) {
            set_slot(proto, lane.protocol[P_KEY_POS], next_pos);
        }
        Py_DECREF(next_pos);
    }
    if (frame == NULL) {
        Py_DECREF(transport);
        return NULL;
    }
    set_slot(conn, lane.conn[C_BURST], Py_True);
    PyObject *result = PyObject_CallMethodOneArg(transport, str_write, frame);
    Py_DECREF(frame);
    Py_DECREF(transport);
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(Reader_buffer_updated_doc,
"buffer_updated(nbytes, /)\n--\n\n"
"``nbytes`` were read into the buffer lent last: pass them on\n"
"(asyncio.BufferedProtocol).");

static PyObject *
Reader_buffer_updated(Reader *self, PyObject *arg)
{
    Py_ssize_t nbytes = PyLong_AsSsize_t(arg);
    if (nbytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->direct) {
        self->direct = 0;
        if (self->on_direct == NULL || self->on_direct == Py_None) {
            PyErr_SetString(PyExc_RuntimeError,
                            "a lent buffer was filled, but _on_direct is not set");
            return NULL;
        }
        return PyObject_CallOneArg(self->on_direct, arg);
    }
    if (self->buffer.obj == NULL || nbytes < 0 || nbytes > self->buffer.len) {
        PyErr_SetString(PyExc_ValueError, "nbytes is not within the buffer lent");
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)self->buffer.buf, nbytes);
    if (data == NULL) {
        return NULL;
    }
    PyObject *result;
    if (self->lane != NULL && self->lane != Py_None) {
        int done = lane_read(self->lane, data);
        if (done) {
            Py_DECREF(data);
            if (done < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
    }
    if (self->on_data == NULL || self->on_data == Py_None) {
        result = PyObject_CallMethodOneArg((PyObject *)self, str_data_received, data);
    }
    else {
        result = PyObject_CallOneArg(self->on_data, data);
    }
    Py_DECREF(data);
    return result;
}

static PyMethodDef Reader_methods[] = {
    {"_use_buffer", (PyCFunction)Reader_use_buffer, METH_O, Reader_use_buffer_doc},
    {"get_buffer", (PyCFunction)Reader_get_buffer, METH_O, Reader_get_buffer_doc},
    {"buffer_updated", (PyCFunction)Reader_buffer_updated, METH_O, Reader_buffer_updated_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Reader_members[] = {
    {"_on_data", T_OBJECT_EX, offsetof(Reader, on_data), 0,
     "Called with the bytes of each read into the shared buffer."},
    {"_on_direct", T_OBJECT_EX, offsetof(Reader, on_direct), 0,
     "Called with the number of bytes read into a buffer the lender lent."},
    {"_lender", T_OBJECT_EX, offsetof(Reader, lender), 0,
     "An object with ``lending`` and ``receive_buffer()``, or None."},
    {"_lane", T_OBJECT, offsetof(Reader, lane), 0,
     "The connection whose reads may take the read lane, or None."},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Reader_slots[] = {
    {Py_tp_doc, "Lends a transport one read buffer and hands each read on."},
    {Py_tp_new, Reader_new},
    {Py_tp_dealloc, Reader_dealloc},
    {Py_tp_traverse, Reader_traverse},
    {Py_tp_clear, Reader_clear},
    {Py_tp_methods, Reader_methods},
    {Py_tp_members, Reader_members},
    {0, NULL},
};

static PyType_Spec Reader_spec = {
    "simple_websocket.sansio._speedups.Reader",
    sizeof(Reader),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    Reader_slots,
};

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL, apply_mask_doc},
    {"mask_into", (PyCFunction)(void (*)(void))mask_into, METH_FASTCALL, mask_into_doc},
    {"parse_small", (PyCFunction)(void (*)(void))parse_small, METH_FASTCALL, parse_small_doc},
    {"build_frame", (PyCFunction)(void (*)(void))build_frame, METH_FASTCALL, build_frame_doc},
    {"bind_lane", (PyCFunction)(void (*)(void))bind_lane, METH_FASTCALL, bind_lane_doc},
    {"send_lane", (PyCFunction)(void (*)(void))send_lane, METH_FASTCALL, send_lane_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "simple_websocket.sansio._speedups",
    "C implementations of WebSocket payload masking, small-frame parsing and reads.",
    -1,
    speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    str_lending = PyUnicode_InternFromString("lending");
    str_receive_buffer = PyUnicode_InternFromString("receive_buffer");
    str_data_received = PyUnicode_InternFromString("data_received");
    str_on_message = PyUnicode_InternFromString("on_message");
    str_dispatch = PyUnicode_InternFromString("_dispatch");
    str_callback_failed = PyUnicode_InternFromString("_callback_failed");
    str_extend = PyUnicode_InternFromString("extend");
    str_done = PyUnicode_InternFromString("done");
    str_set_result = PyUnicode_InternFromString("set_result");
    str_is_closing = PyUnicode_InternFromString("is_closing");
    str_write = PyUnicode_InternFromString("write");
    if (str_lending == NULL || str_receive_buffer == NULL || str_data_received == NULL
        || str_on_message == NULL || str_dispatch == NULL || str_callback_failed == NULL
        || str_extend == NULL || str_done == NULL || str_set_result == NULL
        || str_is_closing == NULL || str_write == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    PyObject *reader = PyType_FromSpec(&Reader_spec);
    if (reader == NULL || PyModule_AddObject(module, "Reader", reader) < 0) {
        Py_XDECREF(reader);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
