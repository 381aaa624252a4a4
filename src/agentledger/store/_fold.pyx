# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The per-event part of :func:`agentledger.store.rollups.fold`, compiled (optional).

:func:`group` does what :func:`agentledger.store.rollups.group_py` does: it groups a batch of
store-ready rows three ways (``what`` per minute, ``attribution`` and ``users`` per hour)
and sums each group's measures, and the distinct users per minute and (kind, name) for
the member bitmaps; with the same keys, in the same order, to the same values. It sums
in C integers, so it gives up (returns ``None``, and the caller runs the Python version)
on anything outside what those hold exactly: a cost it does not read as a plain decimal
(negative, NaN, more than 21 decimal places, $4.6e9 or more), token counts or sums that
do not fit in 64 bits, a start before 1970 or a value of an unexpected type. The Python
version stays the definition; tests compare the two on generated batches.

Why compiled: on a batch of 5,000 events the Python loop was about half of what the
rollups cost the writer (three dictionary lookups, a 12-field tuple and a dozen
additions per event); here the sums are C fields and the interpreter runs none of it.
"""

from libc.math cimport rint
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset, strlen
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.float cimport PyFloat_AS_DOUBLE, PyFloat_CheckExact
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_CheckExact
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_GET_LENGTH, PyUnicode_READ_CHAR

cdef extern from *:
    """
    typedef __int128 agentledger_i128;
    """
    ctypedef long long agentledger_i128
    bint __builtin_add_overflow(long long a, long long b, long long *r) nogil

cdef extern from "Python.h":
    char *PyOS_double_to_string(double val, char format_code, int precision, int flags,
                                int *type) except NULL
    int Py_DTSF_ADD_DOT_0
    void PyMem_Free(void *p)

ctypedef agentledger_i128 i128

cdef enum:
    MAX_BOUNDS = 32

cdef long long MINUTE = 60000000
cdef long long HOUR = 3600000000
cdef long long FRAC = 1000000000000
cdef i128 COST_LIMIT = <i128>4611686018427387904 * <i128>1000000000000  # 2**62 nano-dollars

cdef struct Acc:
    long long calls, errors, inp, outp, cr, cw, rs, nano, frac, unpriced
    double duration
    long long hist[MAX_BOUNDS + 1]


cdef class _Groups:
    """Sums per key: a dict of key -> slot, and the slots as C structs."""

    cdef Acc *accs
    cdef Py_ssize_t n, cap
    cdef dict index

    def __cinit__(self):
        self.cap = 256
        self.n = 0
        self.accs = <Acc*>malloc(self.cap * sizeof(Acc))
        if self.accs is NULL:
            raise MemoryError()
        self.index = {}

    def __dealloc__(self):
        free(self.accs)

    cdef Acc* slot(self, object key) except NULL:
        cdef object found = self.index.get(key)
        cdef Acc *grown
        cdef Py_ssize_t i
        if found is not None:
            return &self.accs[<Py_ssize_t>found]
        if self.n == self.cap:
            grown = <Acc*>realloc(self.accs, 2 * self.cap * sizeof(Acc))
            if grown is NULL:
                raise MemoryError()
            self.accs = grown
            self.cap *= 2
        i = self.n
        self.n += 1
        self.index[key] = i
        memset(&self.accs[i], 0, sizeof(Acc))
        return &self.accs[i]

    cdef dict sums(self, int n_hist):
        """key -> (calls, errors, 5 token sums, nano, frac, None, unpriced, duration,
        *histogram) (no histogram if ``n_hist`` is 0), money carried into nano."""
        cdef dict out = {}
        cdef Acc *a
        cdef list row
        cdef int b
        for key, i in self.index.items():
            a = &self.accs[<Py_ssize_t>i]
            row = [a.calls, a.errors, a.inp, a.outp, a.cr, a.cw, a.rs,
                   a.nano + a.frac // FRAC, a.frac % FRAC, None, a.unpriced, a.duration]
            for b in range(n_hist):
                row.append(a.hist[b])
            out[key] = tuple(row)
        return out


cdef int _split(object cost, long long *nano, long long *frac) except -1:
    """``cost`` (text or Decimal) as nano-dollars and 1e-21 units, as split_cost does when
    it needs no ``cost_extra``; 1: this one is for the Python version."""
    cdef Py_ssize_t n, i
    cdef Py_UCS4 c
    cdef i128 m = 0
    cdef long long e = 0, x = 0
    cdef int digits = 0, seen_dot = 0, in_exp = 0, exp_neg = 0, exp_digits = 0
    nano[0] = 0
    frac[0] = 0
    if cost is None:
        return 0
    if type(cost) is not str:
        if type(cost).__name__ != "Decimal":
            return 1
        cost = str(cost)
    n = PyUnicode_GET_LENGTH(cost)
    if n == 0 or n > 64:
        return 1
    for i in range(n):
        c = PyUnicode_READ_CHAR(cost, i)
        if in_exp:
            if (c == 43 or c == 45) and in_exp == 1:  # + -
                exp_neg = c == 45
                in_exp = 2
            elif 48 <= c <= 57:
                x = x * 10 + (<long long>c - 48)
                exp_digits += 1
                in_exp = 2
                if x > 100000:
                    return 1
            else:
                return 1
        elif 48 <= c <= 57:
            if m != 0 or c != 48:
                digits += 1
                if digits > 36:
                    return 1
            m = m * 10 + (<long long>c - 48)
            if seen_dot:
                e -= 1
        elif c == 46 and not seen_dot:  # .
            seen_dot = 1
        elif (c == 69 or c == 101) and i > 0 and not in_exp:  # E e
            in_exp = 1
        else:
            return 1
    if in_exp and exp_digits == 0:
        return 1
    e += -x if exp_neg else x
    if e < -21:  # more than 21 decimal places: cost_extra
        return 1
    if m == 0:
        return 0
    e += 21
    while e > 0:
        m *= 10
        e -= 1
        if m >= COST_LIMIT:
            return 1
    if m >= COST_LIMIT:
        return 1
    nano[0] = <long long>(m // FRAC)
    frac[0] = <long long>(m % FRAC)
    return 0


cdef inline int _add(Acc *a, long long err, long long inp, long long outp, long long cr,
                     long long cw, long long rs, long long nano, long long frac,
                     long long unpriced, double duration, int b) noexcept nogil:
    """One event into ``a``; 1 if a sum would overflow."""
    a.calls += 1
    a.errors += err
    if (__builtin_add_overflow(a.inp, inp, &a.inp)
            or __builtin_add_overflow(a.outp, outp, &a.outp)
            or __builtin_add_overflow(a.cr, cr, &a.cr)
            or __builtin_add_overflow(a.cw, cw, &a.cw)
            or __builtin_add_overflow(a.rs, rs, &a.rs)
            or __builtin_add_overflow(a.nano, nano, &a.nano)):
        return 1
    a.frac += frac  # < 1e12 per event: no overflow below ~9e6 events per group
    a.unpriced += unpriced
    a.duration += duration
    a.hist[b] += 1
    return 0


def group(list rows, tuple bounds_ms, bint seconds=False, object users_before=None):
    """``(what per minute, attribution per hour, users per hour, users per minute)`` for
    ``rows``, as :func:`agentledger.store.rollups.group_py` returns them, or None.

    ``seconds``: started_at is float seconds since the epoch (as the ledger writes rows),
    read as :func:`agentledger.store.rollups.epoch_us` reads it (``round(s * 1e6)``: the
    product, rounded half to even); else an int of microseconds. ``users_before`` (epoch
    µs): the users groups of the hours before it only (the others are not made)."""
    cdef double bounds[MAX_BOUNDS]
    cdef int n_bounds = len(bounds_ms), lo, hi, mid, b, bad
    cdef _Groups what = _Groups(), attribution = _Groups(), users = _Groups()
    cdef dict members = {}
    cdef tuple row
    cdef long long started, minute, hour, nano, frac, inp, outp, cr, cw, rs, err, unpriced
    cdef long long last_minute = -1, last_hour = -1
    cdef long long users_cut = 0
    cdef bint cut = users_before is not None
    cdef object minute_at = None, hour_at = None, kind, status, name, user, key, seen, at
    cdef double duration, us
    if n_bounds > MAX_BOUNDS or len(rows) > 1_000_000:
        return None
    for b in range(n_bounds):
        bounds[b] = bounds_ms[b]
    if cut:
        users_cut = users_before
    try:
        for row in rows:
            if not (PyLong_CheckExact(row[16])
                    and PyLong_CheckExact(row[17]) and PyLong_CheckExact(row[18])
                    and PyLong_CheckExact(row[19]) and PyLong_CheckExact(row[20])):
                return None  # C would take a float for an integer (and drop its fraction)
            at = row[4]
            if seconds:
                if not PyFloat_CheckExact(at):
                    return None  # a datetime, say: the caller converts
                us = PyFloat_AS_DOUBLE(at) * 1e6
                if not 0.0 <= us < 9.0e18:  # NaN fails both
                    return None
                started = <long long>rint(us)  # half to even, as round() (default mode)
            else:
                if not PyLong_CheckExact(at):
                    return None
                started = at
                if started < 0:
                    return None
            minute = started - started % MINUTE
            if minute != last_minute:  # rows come in time order: one int object a minute
                last_minute = minute
                minute_at = minute
                hour = started - started % HOUR
                if hour != last_hour:
                    last_hour = hour
                    hour_at = hour
            kind = row[6]
            status = row[24]
            name = row[7]
            if _split(row[21], &nano, &frac):
                return None
            err = 1 if status == "error" else 0
            inp = row[16]
            outp = row[17]
            cr = row[18]
            cw = row[19]
            rs = row[20]
            unpriced = 1 if row[22] == "unpriced" else 0
            duration = row[5]
            lo = 0
            hi = n_bounds
            while lo < hi:  # bisect_left
                mid = (lo + hi) >> 1
                if bounds[mid] < duration:
                    lo = mid + 1
                else:
                    hi = mid
            b = lo
            user = row[11]
            bad = _add(what.slot((minute_at, kind, status, row[8] or "", row[9] or "", name)),
                       err, inp, outp, cr, cw, rs, nano, frac, unpriced, duration, b)
            bad |= _add(attribution.slot((hour_at, row[10] or "", row[13] or "", kind, status)),
                        err, inp, outp, cr, cw, rs, nano, frac, unpriced, duration, b)
            if not cut or hour < users_cut:
                bad |= _add(users.slot((hour_at, user or "", kind)),
                            err, inp, outp, cr, cw, rs, nano, frac, unpriced, duration, b)
            if bad:
                return None
            if user is not None:
                key = ("m", minute_at, kind, name)
                seen = members.get(key)
                if seen is None:
                    members[key] = {user}
                else:
                    (<set>seen).add(user)
    except (TypeError, OverflowError, ValueError):
        return None
    return what.sums(n_bounds + 1), attribution.sums(n_bounds + 1), users.sums(0), members


# --- COPY text ---------------------------------------------------------------------------
cdef struct Buf:
    char *data
    Py_ssize_t n, cap


cdef int _reserve(Buf *b, Py_ssize_t more) except -1:
    cdef Py_ssize_t cap = b.cap
    cdef char *grown
    if b.n + more <= cap:
        return 0
    while cap < b.n + more:
        cap *= 2
    grown = <char*>realloc(b.data, cap)
    if grown is NULL:
        raise MemoryError()
    b.data = grown
    b.cap = cap
    return 0


cdef int _put(Buf *b, const char *s, Py_ssize_t n) except -1:
    _reserve(b, n)
    memcpy(b.data + b.n, s, n)
    b.n += n
    return 0


cdef int _put_text(Buf *b, str value) except -1:
    """``value`` as UTF-8, with COPY's escapes for backslash, tab, newline and return."""
    cdef Py_ssize_t n, i
    cdef const char *s = PyUnicode_AsUTF8AndSize(value, &n)
    cdef char c
    _reserve(b, 2 * n)
    for i in range(n):
        c = s[i]
        if c == 92 or c == 9 or c == 10 or c == 13:  # \ \t \n \r
            b.data[b.n] = 92
            b.data[b.n + 1] = 92 if c == 92 else (116 if c == 9 else (110 if c == 10 else 114))
            b.n += 2
        else:
            b.data[b.n] = c
            b.n += 1
    return 0


cdef int _put_int(Buf *b, long long v) except -1:
    cdef char digits[24]
    cdef int i = 24
    cdef unsigned long long u = <unsigned long long>(-(v + 1)) + 1 if v < 0 else <unsigned long long>v
    while True:
        i -= 1
        digits[i] = 48 + <char>(u % 10)
        u //= 10
        if u == 0:
            break
    if v < 0:
        i -= 1
        digits[i] = 45
    return _put(b, &digits[i], 24 - i)


cdef int _put_value(Buf *b, object value) except -1:
    """One COPY field: strings escaped, None as ``\\N``, anything else as ``str()`` writes
    it (ints and floats formatted here)."""
    cdef int overflow
    cdef long long v
    cdef char *formatted
    if value is None:
        return _put(b, "\\N", 2)
    if type(value) is str:
        return _put_text(b, value)
    if type(value) is int:
        v = PyLong_AsLongLongAndOverflow(value, &overflow)
        return _put_text(b, str(value)) if overflow else _put_int(b, v)
    if type(value) is float:
        formatted = PyOS_double_to_string(PyFloat_AS_DOUBLE(value), 114, 0,
                                          Py_DTSF_ADD_DOT_0, NULL)  # 'r': repr
        try:
            return _put(b, formatted, strlen(formatted))
        finally:
            PyMem_Free(formatted)
    return _put_text(b, str(value))


cdef int _put_timestamp(Buf *b, long long us) except -1:
    """``us`` (0 <= us < year 10000) as ``YYYY-MM-DD HH:MM:SS.ffffff+00`` (UTC)."""
    cdef long long days = us // 86400000000, rest = us % 86400000000
    cdef long long z = days + 719468  # days from 0000-03-01 (H. Hinnant's civil_from_days)
    cdef long long era = z // 146097
    cdef long long doe = z - era * 146097
    cdef long long yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef long long doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef long long mp = (5 * doy + 2) // 153
    cdef long long day = doy - (153 * mp + 2) // 5 + 1
    cdef long long month = mp + 3 if mp < 10 else mp - 9
    cdef long long year = yoe + era * 400 + (1 if month <= 2 else 0)
    cdef long long second = rest // 1000000, micro = rest % 1000000
    cdef char out[32]
    cdef long long parts[7]
    cdef int widths[7]
    cdef char seps[7]
    cdef int i, j, at = 0
    parts[:] = [year, month, day, second // 3600, second // 60 % 60, second % 60, micro]
    widths[:] = [4, 2, 2, 2, 2, 2, 6]
    seps[:] = [45, 45, 32, 58, 58, 46, 43]  # - - space : : . +
    for i in range(7):
        for j in range(widths[i] - 1, -1, -1):
            out[at + j] = 48 + <char>(parts[i] % 10)
            parts[i] //= 10
        at += widths[i]
        out[at] = seps[i]
        at += 1
    out[at] = 48
    out[at + 1] = 48
    return _put(b, out, at + 2)


cdef long long _YEAR_10000_US = 253402300800000000


cdef int _put_started(Buf *b, object value) except -1:
    """A float start (epoch seconds) as the UTC time of its ``round(s * 1e6)`` µs."""
    cdef double us
    if not PyFloat_CheckExact(value):
        raise TypeError(f"started_at is not a float: {value!r}")
    us = PyFloat_AS_DOUBLE(value) * 1e6
    if not 0.0 <= us < <double>_YEAR_10000_US:  # NaN fails both
        raise ValueError(f"started_at out of range: {value!r}")
    return _put_timestamp(b, <long long>rint(us))


cdef bytes _rows_text(list rows, Py_ssize_t special, object bucket_text):
    """``rows`` as COPY text: field ``special`` as a rollup bucket (1: through
    ``bucket_text``, once per bucket) or an event's start (4), every other one as
    :func:`_put_value` writes it."""
    cdef Buf b
    cdef dict buckets = {}
    cdef tuple row
    cdef object value, text
    cdef Py_ssize_t i, n
    b.n = 0
    b.cap = 65536
    b.data = <char*>malloc(b.cap)
    if b.data is NULL:
        raise MemoryError()
    try:
        for row in rows:
            n = len(row)
            for i in range(n):
                if i:
                    _put(&b, "\t", 1)
                value = row[i]
                if i != special:
                    _put_value(&b, value)
                elif special == 4:
                    _put_started(&b, value)
                else:
                    text = buckets.get(value)
                    if text is None:
                        text = buckets[value] = bucket_text(value)
                    _put_text(&b, text)
            _put(&b, "\n", 1)
        return PyBytes_FromStringAndSize(b.data, b.n)
    finally:
        free(b.data)


def events_copy_text(list rows):
    """Event rows (:data:`agentledger.events.ROW_FIELDS` order, as the store's ``write``
    takes them) as PostgreSQL COPY text (UTF-8 bytes): every field as
    :func:`copy_text` writes it, but a float started_at (epoch seconds) as the UTC time of
    ``round(s * 1e6)`` µs, as :func:`agentledger.store.rollups.epoch_us` reads it (and
    SQLite stores it). Any other started_at (a datetime, say) raises TypeError, and one
    before 1970 or from the year 10000 on ValueError: the caller's Python path handles
    those (and says what is wrong)."""
    return _rows_text(rows, 4, None)


def copy_text(list rows, int n_keys, object bucket_text):
    """Rollup rows ``(grain, bucket, *keys, *measures)`` as PostgreSQL COPY text (UTF-8
    bytes), as :func:`agentledger.store.sql._copy_text` writes them: the bucket as
    ``bucket_text(bucket)`` (once per bucket), every other field as :func:`_put_value`
    writes it."""
    return _rows_text(rows, 1, bucket_text)


# --- users groups summed ahead (rollups.UsersAhead) --------------------------------------
def merge_users(dict hours, dict groups, object mark, object add_extra):
    """:meth:`agentledger.store.rollups.UsersAhead.merge` of one batch: ``groups``
    ((hour, user, kind) -> the 12 ``users`` measures) of the hours at or after ``mark``
    added into ``hours`` (hour -> key -> a list of the measures; ``cost_frac`` carried into
    ``cost_nano``, ``cost_extra`` added by ``add_extra``). Python integers throughout (no
    overflow). Returns the number of keys added."""
    cdef Py_ssize_t added = 0, i
    cdef object key, hour, last = None, value, m
    cdef dict table = None
    cdef list acc
    for key, m in groups.items():
        hour = key[0]
        if hour < mark:
            continue
        if table is None or hour != last:
            last = hour
            table = hours.get(hour)
            if table is None:
                table = {}
                hours[hour] = table
        value = table.get(key)
        if value is None:
            table[key] = list(m)
            added += 1
            continue
        acc = <list>value
        for i in range(9):
            acc[i] = acc[i] + m[i]
        if acc[8] >= FRAC:  # each below FRAC: one carry at most
            acc[8] = acc[8] - FRAC
            acc[7] = acc[7] + 1
        if m[9] is not None:
            acc[9] = add_extra(acc[9], m[9])
        acc[10] = acc[10] + m[10]
        acc[11] = acc[11] + m[11]
    return added
