package attach

import (
	"encoding/json"
	"errors"
	"io"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// maxResizeMessage bounds one resize message: {"Width":65535,"Height":65535}
// is 30 bytes; whitespace and unknown fields get some room, an endless
// value does not.
const maxResizeMessage = 1 << 10

// errResizeTooLarge ends a resize stream whose message does not end within
// maxResizeMessage bytes.
var errResizeTooLarge = errors.New("resize message too large")

// terminalSize is a resize message of the channel protocols (the kubelet's
// TerminalSize).
type terminalSize struct {
	Width, Height uint16
}

// parseResize decodes one resize message; false if it is not one.
func parseResize(p []byte) (wire.Size, bool) {
	if len(p) > maxResizeMessage {
		return wire.Size{}, false
	}
	var sz terminalSize
	if json.Unmarshal(p, &sz) != nil {
		return wire.Size{}, false
	}
	return wire.Size{Cols: sz.Width, Rows: sz.Height}, true
}

// readSizes decodes the resize stream of a SPDY attach (a sequence of JSON
// values) into sizes, the latest only, until the stream ends or breaks its
// bound; then it closes sizes. With sizes nil (an observer's stream) it
// reads and drops. The kubelet's decoder reads one value without bound: a
// client that sends one endless value would grow the replica until it is
// killed.
func readSizes(r io.Reader, sizes chan wire.Size) {
	if sizes != nil {
		defer close(sizes)
	}
	br := &boundedReader{r: r, limit: maxResizeMessage}
	dec := json.NewDecoder(br)
	for {
		var sz terminalSize
		if err := dec.Decode(&sz); err != nil {
			return
		}
		br.consumed = dec.InputOffset()
		if sizes != nil {
			latest(sizes, wire.Size{Cols: sz.Width, Rows: sz.Height})
		}
	}
}

// boundedReader lets a json.Decoder hold at most limit bytes that it has
// not yet decoded: read is what it was given, consumed what it decoded.
type boundedReader struct {
	r              io.Reader
	limit          int64
	read, consumed int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	room := b.limit - (b.read - b.consumed)
	if room <= 0 {
		return 0, errResizeTooLarge
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.r.Read(p)
	b.read += int64(n)
	return n, err
}
