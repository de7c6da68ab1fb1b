package transcript

import (
	"bytes"
	"regexp"
	"time"
)

const (
	// holdBack is the most output a Redactor keeps back past a line's end,
	// waiting for the rest of a match that has not begun yet.
	holdBack = 4 << 10
	// maxHold bounds what a match that has begun may hold back: past it what
	// it matched so far is masked and recorded, and the rest may go unmasked (a
	// "secret" of 64 KiB without a line end is output, not a token). It
	// bounds the redactor's memory and rescanning whatever a process writes.
	maxHold = 64 << 10
)

// Segment is output that may be recorded, masked, and when its first byte
// arrived.
type Segment struct {
	Data []byte
	At   time.Duration
}

// Redactor masks the matches of its expressions in a session's output
// before it is recorded, a '*' for each byte matched. Output arrives in
// pieces (frames, reads), and a match may span two: what might still become
// part of one (after the last line end, or a match not yet ended) is held
// back until more comes. Held-back output keeps the time each piece arrived.
type Redactor struct {
	res     []*regexp.Regexp
	pending []byte
	// lineEnd: pending[:lineEnd] ends with its last line end (0: none);
	// kept so that each write looks for line ends in its own bytes only
	lineEnd int
	// marks: where in pending each write's bytes begin, and when they came
	marks []mark
}

type mark struct {
	off int
	at  time.Duration
}

// NewRedactor masks the matches of res; with none it passes output on.
func NewRedactor(res []*regexp.Regexp) *Redactor {
	return &Redactor{res: res}
}

// Write takes output that arrived at; it returns what may be recorded now,
// masked, in segments that each keep their arrival time.
func (r *Redactor) Write(p []byte, at time.Duration) []Segment {
	if len(r.res) == 0 {
		return []Segment{{p, at}}
	}
	if len(p) == 0 {
		return nil
	}
	if i := lastLineEnd(p); i > 0 {
		r.lineEnd = len(r.pending) + i
	}
	r.marks = append(r.marks, mark{len(r.pending), at})
	r.pending = append(r.pending, p...)
	cut := r.lineEnd
	if len(r.pending)-cut > holdBack {
		cut = len(r.pending) - holdBack
	}
	return r.emit(cut, false)
}

// Flush returns the rest, masked (the output has ended, or something
// else is recorded after it).
func (r *Redactor) Flush() []Segment {
	return r.emit(len(r.pending), true)
}

// emit masks what is pending and returns it up to cut, moved back so that
// no match is split, unless all must go or the match holds back more than
// maxHold: then the part matched so far is masked.
func (r *Redactor) emit(cut int, all bool) []Segment {
	if len(r.pending) == 0 {
		return nil
	}
	var matches [][]int
	for _, re := range r.res {
		for _, m := range re.FindAllIndex(r.pending, -1) {
			if m[1] > m[0] {
				matches = append(matches, m)
			}
		}
	}
	// Moving the cut back to one match's start may split another that
	// began earlier: until no match straddles it.
	for moved := !all; moved; {
		moved = false
		for _, m := range matches {
			if m[0] < cut && m[1] > cut {
				cut, moved = m[0], true
			}
		}
	}
	if len(r.pending)-cut > maxHold {
		// A match that has held back too much: all of it so far goes,
		// masked.
		cut = len(r.pending)
	}
	out := append([]byte(nil), r.pending[:cut]...)
	for _, m := range matches {
		if m[0] < cut {
			mask(out, m[0], min(m[1], cut))
		}
	}
	// One segment per write that reached out, with its time; the writes
	// held back keep theirs, the first from where the cut left it.
	var segs []Segment
	kept := r.marks[:0]
	for i, m := range r.marks {
		end := len(r.pending)
		if i+1 < len(r.marks) {
			end = r.marks[i+1].off
		}
		switch {
		case m.off >= cut:
			kept = append(kept, mark{m.off - cut, m.at})
		case end > cut:
			segs = append(segs, Segment{out[m.off:], m.at})
			kept = append(kept, mark{0, m.at})
		default:
			segs = append(segs, Segment{out[m.off:end], m.at})
		}
	}
	r.marks = kept
	r.pending = append(r.pending[:0], r.pending[cut:]...)
	r.lineEnd = lastLineEnd(r.pending)
	return segs
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
