// Package resume is the attach subresource's resume contract, shared by the
// server and its clients. A viewer counts the output bytes it has received
// and reattaches with since=that count; the server sends the output from
// that byte on. When some of those bytes are no longer kept, the attach
// begins with a Notice saying how many were lost. A Notice there is not
// output: a client counts the bytes it stands for, not its own length, so
// that its count stays the session's offset and the next reattach resumes
// at the right byte (counting the Notice instead would skip or repeat
// output).
//
// A Notice is looked for only as an attach's first bytes, so output that
// contains the same text (a nested kubectl terminal, a replayed recording)
// is counted as output. So is the Notice a viewer gets when it falls behind
// the scrollback in the middle of an attach (it keeps its attach, whatever
// its client): its next reattach may then repeat that many bytes.
package resume

import "strconv"

const (
	noticePrefix = "\r\n[terminal-apiserver: "
	noticeSuffix = " bytes of output are no longer kept]\r\n"
	// maxDigits keeps a count within what a JavaScript number holds
	// exactly (the browser console counts the same way).
	maxDigits = 15
	// MaxOffset is the largest count a client keeps (2^53-1, for the
	// same reason).
	MaxOffset = 1<<53 - 1
)

// Notice is what the server writes first in an attach whose since asks for
// bytes no longer kept.
func Notice(lost uint64) string {
	return noticePrefix + strconv.FormatUint(lost, 10) + noticeSuffix
}

// Counter counts a viewer's output as the server does, attach by attach.
type Counter struct {
	n uint64
	// matching: every byte of this attach so far may be a Notice's;
	// pending of them, of which digits are the count's (lost) and suffix
	// the suffix's.
	matching                bool
	pending, digits, suffix int
	lost                    uint64
}

// Start begins an attach with since=n.
func (c *Counter) Start(n uint64) {
	*c = Counter{n: min(n, MaxOffset), matching: true}
}

// Count takes an attach's output bytes as they arrive.
func (c *Counter) Count(p []byte) {
	i := 0
	for ; c.matching && i < len(p); i++ {
		if !c.step(p[i]) {
			// Not a Notice: what was held back is output, like the rest.
			c.add(uint64(c.pending))
			c.matching = false
			break
		}
		c.pending++
		if c.suffix == len(noticeSuffix) {
			c.add(c.lost)
			c.matching = false
			i++
			break
		}
	}
	if !c.matching {
		c.add(uint64(len(p) - i))
	}
}

// step says whether b continues a Notice.
func (c *Counter) step(b byte) bool {
	switch {
	case c.pending < len(noticePrefix):
		return b == noticePrefix[c.pending]
	case c.suffix == 0 && b >= '0' && b <= '9' && c.digits < maxDigits:
		c.lost = c.lost*10 + uint64(b-'0')
		c.digits++
		return true
	case c.digits > 0 && b == noticeSuffix[c.suffix]:
		c.suffix++
		return true
	}
	return false
}

func (c *Counter) add(k uint64) {
	c.n = min(c.n+min(k, MaxOffset), MaxOffset)
}

// Offset is the session's output offset the viewer has reached: what it
// sends as since when it reattaches. Bytes that may still be a Notice are
// not in it: an attach that ended in the middle of one resumes where it
// began.
func (c *Counter) Offset() uint64 {
	return c.n
}
