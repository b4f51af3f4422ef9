/* The static search's inner loops in C: inverting a block's terms into posting
 * lists and writing its shards (see static_search.py, whose pure-Python
 * functions these equal byte for byte; tests/test_static_search_native.py
 * compares them).
 *
 * A block of 1,024 articles holds some 450,000 term occurrences: in Python each
 * cost a bytes object, a dictionary look-up and a list append, a quarter of a
 * full build's CPU. Here a term is a slice of the article's packed terms until
 * it is written.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *term;
    Py_ssize_t len;
    uint32_t *ids;
    Py_ssize_t count, capacity;
} Posting;

typedef struct {
    Posting *postings;
    Py_ssize_t count, capacity;
    Py_ssize_t *slots; /* index + 1 into postings; 0: empty */
    Py_ssize_t mask;
} Table;

static uint64_t hash64(const char *data, Py_ssize_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (Py_ssize_t i = 0; i < len; i++) {
        h = (h ^ (unsigned char)data[i]) * 0x100000001b3ULL;
    }
    return h ^ (h >> 29);
}

static void table_free(Table *t) {
    if (t->postings != NULL) {
        for (Py_ssize_t i = 0; i < t->count; i++) {
            free(t->postings[i].ids);
        }
    }
    free(t->postings);
    free(t->slots);
}

static int table_init(Table *t, Py_ssize_t slots) {
    Py_ssize_t size = 1024;
    while (size < slots) {
        size <<= 1;
    }
    t->count = 0;
    t->capacity = 0;
    t->postings = NULL;
    t->mask = size - 1;
    t->slots = calloc((size_t)size, sizeof(Py_ssize_t));
    return t->slots == NULL ? -1 : 0;
}

static int table_grow(Table *t) {
    Py_ssize_t size = (t->mask + 1) * 2;
    Py_ssize_t *slots = calloc((size_t)size, sizeof(Py_ssize_t));
    if (slots == NULL) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < t->count; i++) {
        Posting *p = &t->postings[i];
        Py_ssize_t at = (Py_ssize_t)(hash64(p->term, p->len) & (uint64_t)(size - 1));
        while (slots[at]) {
            at = (at + 1) & (size - 1);
        }
        slots[at] = i + 1;
    }
    free(t->slots);
    t->slots = slots;
    t->mask = size - 1;
    return 0;
}

static int append_id(Posting *p, uint32_t id) {
    if (p->count == p->capacity) {
        Py_ssize_t capacity = p->capacity ? p->capacity * 2 : 4;
        uint32_t *ids = realloc(p->ids, (size_t)capacity * sizeof(uint32_t));
        if (ids == NULL) {
            return -1;
        }
        p->ids = ids;
        p->capacity = capacity;
    }
    p->ids[p->count++] = id;
    return 0;
}

static int table_add(Table *t, const char *term, Py_ssize_t len, uint32_t id) {
    Py_ssize_t at = (Py_ssize_t)(hash64(term, len) & (uint64_t)t->mask);
    for (;;) {
        Py_ssize_t slot = t->slots[at];
        if (slot == 0) {
            break;
        }
        Posting *p = &t->postings[slot - 1];
        if (p->len == len && memcmp(p->term, term, (size_t)len) == 0) {
            return append_id(p, id);
        }
        at = (at + 1) & t->mask;
    }
    if (t->count == t->capacity) {
        Py_ssize_t capacity = t->capacity ? t->capacity * 2 : 4096;
        Posting *postings = realloc(t->postings, (size_t)capacity * sizeof(Posting));
        if (postings == NULL) {
            return -1;
        }
        t->postings = postings;
        t->capacity = capacity;
    }
    Posting *p = &t->postings[t->count];
    p->term = term;
    p->len = len;
    p->ids = NULL;
    p->count = p->capacity = 0;
    t->slots[at] = ++t->count;
    if (append_id(p, id) < 0) {
        return -1;
    }
    if (t->count * 2 > t->mask + 1) {
        return table_grow(t);
    }
    return 0;
}

static int compare_terms(const void *a, const void *b) {
    const Posting *x = a, *y = b;
    Py_ssize_t len = x->len < y->len ? x->len : y->len;
    int order = memcmp(x->term, y->term, (size_t)len);
    if (order != 0) {
        return order;
    }
    return (x->len > y->len) - (x->len < y->len);
}

/* Appends the LEB128 varint of value; returns the new length. */
static Py_ssize_t put_varint(unsigned char *out, Py_ssize_t at, uint64_t value) {
    while (value >= 0x80) {
        out[at++] = (unsigned char)((value & 0x7F) | 0x80);
        value >>= 7;
    }
    out[at++] = (unsigned char)value;
    return at;
}

/* Makes the scratch buffer hold the varints of a posting list's ids (5 bytes each
 * at most); -1 with MemoryError set when it cannot. */
static int reserve(const Posting *p, unsigned char **scratch, Py_ssize_t *room) {
    Py_ssize_t need = p->count * 5;
    if (need > *room) {
        unsigned char *grown = realloc(*scratch, (size_t)need);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        *scratch = grown;
        *room = need;
    }
    return 0;
}

/* (kind, bytes) of one posting list, as static_search.encode_postings makes them:
 * delta varints, or a bitmap when that is smaller. */
static PyObject *encoded(const Posting *p, unsigned char **scratch, Py_ssize_t *room) {
    if (reserve(p, scratch, room) < 0) {
        return NULL;
    }
    Py_ssize_t len = 0;
    uint32_t last = 0;
    for (Py_ssize_t i = 0; i < p->count; i++) {
        len = put_varint(*scratch, len, (uint64_t)(p->ids[i] - last));
        last = p->ids[i];
    }
    Py_ssize_t size = (Py_ssize_t)(last / 8) + 1;
    if (size >= len) {
        PyObject *data = PyBytes_FromStringAndSize((const char *)*scratch, len);
        return data == NULL ? NULL : Py_BuildValue("(iN)", 0, data);
    }
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        return NULL;
    }
    unsigned char *bits = (unsigned char *)PyBytes_AS_STRING(data);
    memset(bits, 0, (size_t)size);
    for (Py_ssize_t i = 0; i < p->count; i++) {
        bits[p->ids[i] >> 3] |= (unsigned char)(1u << (p->ids[i] & 7));
    }
    return Py_BuildValue("(iN)", 1, data);
}

/* Fills the table with the terms of texts[i] (newline-separated) for article ids[i]. */
static int invert(Table *table, PyObject *args, const char *name) {
    PyObject *texts, *ids;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &texts, &PyList_Type, &ids)) {
        return -1;
    }
    Py_ssize_t docs = PyList_GET_SIZE(texts);
    if (PyList_GET_SIZE(ids) != docs) {
        PyErr_Format(PyExc_ValueError, "%s: texts and ids differ in length", name);
        return -1;
    }
    if (table_init(table, docs * 64) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t d = 0; d < docs; d++) {
        PyObject *text = PyList_GET_ITEM(texts, d);
        if (!PyBytes_Check(text)) {
            PyErr_Format(PyExc_TypeError, "%s: texts must be bytes", name);
            return -1;
        }
        unsigned long long value = PyLong_AsUnsignedLongLong(PyList_GET_ITEM(ids, d));
        if (PyErr_Occurred()) {
            return -1;
        }
        if (value > UINT32_MAX) {
            PyErr_Format(PyExc_OverflowError, "%s: an id is past 32 bits", name);
            return -1;
        }
        const char *data = PyBytes_AS_STRING(text);
        Py_ssize_t len = PyBytes_GET_SIZE(text);
        if (len == 0) {  /* no terms (b"".split(b"\n") would give one empty term) */
            continue;
        }
        Py_ssize_t start = 0;
        for (Py_ssize_t at = 0; at <= len; at++) {
            if (at == len || data[at] == '\n') {
                if (table_add(table, data + start, at - start, (uint32_t)value) < 0) {
                    PyErr_NoMemory();
                    return -1;
                }
                start = at + 1;
            }
        }
    }
    return 0;
}

/* The entry of encode_block's list for one term: (term, kind, payload). */
static PyObject *block_entry(const Posting *p, unsigned char **scratch, Py_ssize_t *room) {
    PyObject *pair = encoded(p, scratch, room);
    if (pair == NULL) {
        return NULL;
    }
    PyObject *entry = Py_BuildValue("(y#OO)", p->term, p->len, PyTuple_GET_ITEM(pair, 0),
                                    PyTuple_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    return entry;
}

/* The entry of run_postings' list for one term: (term, first id, last id, the delta
 * varints after the first id). */
static PyObject *run_entry(const Posting *p, unsigned char **scratch, Py_ssize_t *room) {
    if (reserve(p, scratch, room) < 0) {
        return NULL;
    }
    Py_ssize_t len = 0;
    for (Py_ssize_t k = 1; k < p->count; k++) {
        len = put_varint(*scratch, len, (uint64_t)(p->ids[k] - p->ids[k - 1]));
    }
    return Py_BuildValue("(y#kky#)", p->term, p->len, (unsigned long)p->ids[0],
                         (unsigned long)p->ids[p->count - 1], (const char *)*scratch, len);
}

typedef PyObject *(*EntryMaker)(const Posting *, unsigned char **, Py_ssize_t *);

/* The list of one entry a term of the articles in args (texts, ids), by term when
 * sorted is set. */
static PyObject *entries(PyObject *args, const char *name, int sorted, EntryMaker make) {
    Table table = {0};
    PyObject *result = NULL;
    unsigned char *scratch = NULL;
    Py_ssize_t room = 0;
    if (invert(&table, args, name) < 0) {
        goto done;
    }
    if (sorted && table.count > 0) {
        qsort(table.postings, (size_t)table.count, sizeof(Posting), compare_terms);
    }
    result = PyList_New(table.count);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < table.count; i++) {
        PyObject *entry = make(&table.postings[i], &scratch, &room);
        if (entry == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, entry);
    }
done:
    free(scratch);
    table_free(&table);
    return result;
}

static PyObject *encode_block(PyObject *module, PyObject *args) {
    return entries(args, "encode_block", 1, block_entry);
}

/* A run of a block too big for one, in no order: the caller appends each term's
 * ids to the block's lists (static_search._Postings). */
static PyObject *run_postings(PyObject *module, PyObject *args) {
    return entries(args, "run_postings", 0, run_entry);
}

static uint32_t fnv1a32(const unsigned char *data, Py_ssize_t len) {
    uint32_t h = 0x811C9DC5u;
    for (Py_ssize_t i = 0; i < len; i++) {
        h = (h ^ data[i]) * 0x01000193u;
    }
    return h;
}

static PyObject *py_fnv1a32(PyObject *module, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    uint32_t h = fnv1a32(view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(h);
}

/* The shards of a block: entries (term, tag, payload) go to shard
 * fnv1a32(term) % shards, each written as varint len, term, varint tag, payload. */
static PyObject *shard_parts(PyObject *module, PyObject *args) {
    PyObject *entries;
    Py_ssize_t shards;
    if (!PyArg_ParseTuple(args, "O!n:shard_parts", &PyList_Type, &entries, &shards)) {
        return NULL;
    }
    if (shards < 1 || shards > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "shards must be from 1 to 2**31 - 1");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(entries);
    Py_ssize_t *sizes = calloc((size_t)shards, sizeof(Py_ssize_t));
    uint32_t *home = malloc((size_t)(count ? count : 1) * sizeof(uint32_t));
    PyObject *result = NULL;
    if (sizes == NULL || home == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3
                || !PyBytes_Check(PyTuple_GET_ITEM(entry, 0))
                || !PyBytes_Check(PyTuple_GET_ITEM(entry, 2))) {
            PyErr_SetString(PyExc_TypeError, "an entry is (bytes, int, bytes)");
            goto done;
        }
        PyObject *term = PyTuple_GET_ITEM(entry, 0);
        unsigned long long tag = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(entry, 1));
        if (PyErr_Occurred()) {
            goto done;
        }
        Py_ssize_t len = PyBytes_GET_SIZE(term);
        home[i] = fnv1a32((const unsigned char *)PyBytes_AS_STRING(term), len) % (uint32_t)shards;
        unsigned char scratch[20];
        sizes[home[i]] += put_varint(scratch, 0, (uint64_t)len) + len
                          + put_varint(scratch, 0, tag) + PyBytes_GET_SIZE(PyTuple_GET_ITEM(entry, 2));
    }
    result = PyList_New(shards);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t s = 0; s < shards; s++) {
        PyObject *part = PyBytes_FromStringAndSize(NULL, sizes[s]);
        if (part == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, s, part);
        sizes[s] = 0;  /* from here on: bytes written */
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *entry = PyList_GET_ITEM(entries, i);
        PyObject *term = PyTuple_GET_ITEM(entry, 0), *payload = PyTuple_GET_ITEM(entry, 2);
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(result, home[i]));
        Py_ssize_t at = sizes[home[i]];
        Py_ssize_t len = PyBytes_GET_SIZE(term), size = PyBytes_GET_SIZE(payload);
        at = put_varint(out, at, (uint64_t)len);
        memcpy(out + at, PyBytes_AS_STRING(term), (size_t)len);
        at += len;
        at = put_varint(out, at, PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(entry, 1)));
        memcpy(out + at, PyBytes_AS_STRING(payload), (size_t)size);
        sizes[home[i]] = at + size;
    }
done:
    free(sizes);
    free(home);
    return result;
}

static PyMethodDef methods[] = {
    {"encode_block", encode_block, METH_VARARGS,
     "encode_block(texts, ids) -> [(term, kind, payload)], by term: each article's "
     "newline-separated terms inverted into encoded posting lists."},
    {"run_postings", run_postings, METH_VARARGS,
     "run_postings(texts, ids) -> [(term, first id, last id, later delta varints)]."},
    {"shard_parts", shard_parts, METH_VARARGS,
     "shard_parts(entries, shards) -> [bytes]: the entries (term, tag, payload) written "
     "into their shards."},
    {"fnv1a32", py_fnv1a32, METH_O, "fnv1a32(data) -> the 32-bit FNV-1a hash of bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "caixun.publish._postings",
    "The static search's inner loops in C (see static_search.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__postings(void) {
    return PyModule_Create(&module);
}
