/* markupsafe.escape in C, for the compiled templates (see site._Template).
 *
 * markupsafe 3 escapes in C but wraps the result in Markup in Python
 * (escape(), then Markup.__new__): two Python calls for each value a template
 * prints, a tenth of a full build's CPU. This makes the same Markup in one C
 * call. tests/test_site.py compares it with markupsafe.escape.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *markup_type;  /* markupsafe.Markup */
static PyObject *html_name;    /* "__html__" */
static PyObject *specials[5], *entities[5];

/* A Markup holding the str s (a new reference; s is borrowed). */
static PyObject *as_markup(PyObject *s) {
    PyObject *args = PyTuple_Pack(1, s);
    if (args == NULL) {
        return NULL;
    }
    PyObject *markup = PyUnicode_Type.tp_new((PyTypeObject *)markup_type, args, NULL);
    Py_DECREF(args);
    return markup;
}

static PyObject *escaped(PyObject *s) {
    Py_ssize_t len = PyUnicode_GET_LENGTH(s);
    Py_INCREF(s);
    for (int i = 0; i < 5; i++) {
        Py_UCS4 special = PyUnicode_READ_CHAR(specials[i], 0);
        Py_ssize_t found = PyUnicode_FindChar(s, special, 0, len, 1);
        if (found == -2) {
            Py_DECREF(s);
            return NULL;
        }
        if (found == -1) {
            continue;
        }
        PyObject *replaced = PyUnicode_Replace(s, specials[i], entities[i], -1);
        Py_DECREF(s);
        if (replaced == NULL) {
            return NULL;
        }
        s = replaced;
        len = PyUnicode_GET_LENGTH(s);
    }
    PyObject *markup = as_markup(s);
    Py_DECREF(s);
    return markup;
}

static PyObject *escape(PyObject *module, PyObject *value) {
    if (PyUnicode_CheckExact(value)) {
        return escaped(value);
    }
    if (Py_IS_TYPE(value, (PyTypeObject *)markup_type)) {  /* Markup(m.__html__()) is m */
        Py_INCREF(value);
        return value;
    }
    PyObject *html = PyObject_GetAttr(value, html_name);
    if (html == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return NULL;
        }
        PyErr_Clear();
        PyObject *text = PyObject_Str(value);
        if (text == NULL) {
            return NULL;
        }
        PyObject *markup = escaped(text);
        Py_DECREF(text);
        return markup;
    }
    PyObject *text = PyObject_CallNoArgs(html);
    Py_DECREF(html);
    if (text == NULL) {
        return NULL;
    }
    PyObject *markup = PyUnicode_CheckExact(text) ? as_markup(text)
                                                  : PyObject_CallOneArg(markup_type, text);
    Py_DECREF(text);
    return markup;
}

static PyMethodDef methods[] = {
    {"escape", escape, METH_O,
     "escape(value) -> Markup: markupsafe.escape, in one C call."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "caixun.publish._markup",
    "markupsafe.escape in C (see site._Template).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__markup(void) {
    static const char *from[5] = {"&", ">", "<", "'", "\""};
    static const char *to[5] = {"&amp;", "&gt;", "&lt;", "&#39;", "&#34;"};
    PyObject *markupsafe = PyImport_ImportModule("markupsafe");
    if (markupsafe == NULL) {
        return NULL;
    }
    markup_type = PyObject_GetAttrString(markupsafe, "Markup");
    Py_DECREF(markupsafe);
    if (markup_type == NULL) {
        return NULL;
    }
    html_name = PyUnicode_InternFromString("__html__");
    if (html_name == NULL) {
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        specials[i] = PyUnicode_FromString(from[i]);
        entities[i] = PyUnicode_FromString(to[i]);
        if (specials[i] == NULL || entities[i] == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module);
}
