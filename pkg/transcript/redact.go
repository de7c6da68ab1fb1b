package transcript

import (
	"bytes"
	"regexp"
	"time"
)

// holdBack is the most output a Redactor keeps back, past a line's end,
// waiting for the rest of a match: a match longer than that which does not
// end a line may be cut in two, and its parts not masked.
const holdBack = 4 << 10

// Redactor masks the matches of its expressions in a session's output
// before it is recorded, a '*' for each byte matched. Output arrives in pieces (frames, reads),
// and a match may span two: what might still become part of one (after
// the last line end) is held back until more comes, up to holdBack.
type Redactor struct {
	res     []*regexp.Regexp
	pending []byte
	// lineEnd: pending[:lineEnd] ends with its last line end (0: none);
	// kept so that each write looks for line ends in its own bytes only
	lineEnd int
	at      time.Duration // when the first held-back byte arrived
}

// NewRedactor masks the matches of res; with none it passes output on.
func NewRedactor(res []*regexp.Regexp) *Redactor {
	return &Redactor{res: res}
}

// Write takes output that arrived at; it returns what may be recorded now,
// masked, and when its first byte arrived.
func (r *Redactor) Write(p []byte, at time.Duration) ([]byte, time.Duration) {
	if len(r.res) == 0 {
		return p, at
	}
	if len(r.pending) == 0 {
		r.at = at
	}
	if i := lastLineEnd(p); i > 0 {
		r.lineEnd = len(r.pending) + i
	}
	r.pending = append(r.pending, p...)
	cut := r.lineEnd
	if len(r.pending)-cut > holdBack {
		cut = len(r.pending) - holdBack
	}
	return r.emit(cut)
}

// Flush returns the rest, masked (the output has ended).
func (r *Redactor) Flush() ([]byte, time.Duration) {
	return r.emit(len(r.pending))
}

// emit masks what is pending and returns it up to cut, moved back so that
// no match is split: a match that reaches past cut waits for the rest.
func (r *Redactor) emit(cut int) ([]byte, time.Duration) {
	var matches [][]int
	for _, re := range r.res {
		for _, m := range re.FindAllIndex(r.pending, -1) {
			if m[1] > m[0] {
				matches = append(matches, m)
			}
		}
	}
	if cut < len(r.pending) {
		for _, m := range matches {
			if m[0] < cut && m[1] > cut {
				cut = m[0]
			}
		}
	}
	out := append([]byte(nil), r.pending[:cut]...)
	for _, m := range matches {
		if m[1] <= cut {
			mask(out, m[0], m[1])
		}
	}
	r.pending = append(r.pending[:0], r.pending[cut:]...)
	// What is held back is under holdBack, or a match's length.
	r.lineEnd = lastLineEnd(r.pending)
	return out, r.at
}

// mask overwrites b[i:j] with stars, byte for byte: a replay keeps its
// layout (a character of several bytes shows as several stars) and shows
// nothing of the secret.
func mask(b []byte, i, j int) {
	for k := i; k < j; k++ {
		b[k] = '*'
	}
}

// lastLineEnd is the index after p's last '\n', 0 if it has none. Output
// with lines ends one near its end; output without (bulk, binary) is
// searched forward with IndexByte, which is vectorised where LastIndexByte
// is not: the redactor scans every byte recorded.
func lastLineEnd(p []byte) int {
	tail := max(len(p)-256, 0)
	if i := bytes.LastIndexByte(p[tail:], '\n'); i >= 0 {
		return tail + i + 1
	}
	end := 0
	for {
		i := bytes.IndexByte(p[end:tail], '\n')
		if i < 0 {
			return end
		}
		end += i + 1
	}
}
