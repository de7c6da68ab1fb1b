// Package resume is the attach subresource's resume contract, shared by the
// server and its clients. A viewer counts the output bytes it has received
// and reattaches with since=that count; the server sends the output from
// that byte on. When some of those bytes are no longer kept, the server
// first writes a Notice saying how many were lost. A Notice is not output:
// a client counts the bytes it stands for, not its own length, so that its
// count stays the session's offset and the next reattach resumes at the
// right byte (counting the Notice instead would skip or repeat output).
package resume

import "strconv"

const (
	noticePrefix = "\r\n[terminal-apiserver: "
	noticeSuffix = " bytes of output are no longer kept]\r\n"
	// maxDigits keeps a count within what a JavaScript number holds
	// exactly (the browser console counts the same way).
	maxDigits = 15
)

// Notice is what the server writes before the first kept byte when lost
// bytes of output were asked for.
func Notice(lost uint64) string {
	return noticePrefix + strconv.FormatUint(lost, 10) + noticeSuffix
}

// Counter counts a viewer's output as the server does. A process could
// print a Notice's text itself; it would then move its own viewers'
// resume point, which tells them nothing it could not print anyway.
type Counter struct {
	n uint64
	// The Notice being matched: bytes of the prefix matched, the count's
	// digits so far, bytes of the suffix matched.
	prefix, suffix int
	digits         int
	lost           uint64
}

// Count takes output bytes as they arrive.
func (c *Counter) Count(p []byte) {
	c.n += uint64(len(p))
	for i := 0; i < len(p); i++ {
		b := p[i]
		switch {
		case c.prefix < len(noticePrefix):
			if b == noticePrefix[c.prefix] {
				c.prefix++
				continue
			}
		case c.suffix == 0 && b >= '0' && b <= '9' && c.digits < maxDigits:
			c.lost = c.lost*10 + uint64(b-'0')
			c.digits++
			continue
		case c.digits > 0 && b == noticeSuffix[c.suffix]:
			c.suffix++
			if c.suffix == len(noticeSuffix) {
				// The whole Notice was counted as output: count what it
				// stands for instead.
				c.n = c.n - uint64(len(noticePrefix)+c.digits+len(noticeSuffix)) + c.lost
				c.reset()
			}
			continue
		}
		c.reset()
		if b == noticePrefix[0] {
			c.prefix = 1
		}
	}
}

func (c *Counter) reset() {
	c.prefix, c.suffix, c.digits, c.lost = 0, 0, 0, 0
}

// Offset is the session's output offset the viewer has reached: what it
// sends as since when it reattaches.
func (c *Counter) Offset() uint64 {
	return c.n
}

// Start sets the offset an attach with since=n begins at.
func (c *Counter) Start(n uint64) {
	c.n = n
	c.reset()
}
