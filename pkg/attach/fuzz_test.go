package attach

import (
	"bytes"
	"testing"

	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Any frame a viewer sends, on any of the WebSocket protocols, decodes
// without panic to a payload no larger than the frame, and a resize payload
// parses or is dropped.
func FuzzWebSocketFrame(f *testing.F) {
	for _, seed := range [][]byte{{}, {0}, []byte("\x00ls\r"), []byte("\x04{\"Width\":80,\"Height\":24}"), {255, 0},
		[]byte("0bHMNCg=="), []byte("4eyJXaWR0aCI6MX0="), []byte("0!!!not base64"), {255}} {
		for mode := range uint8(3) {
			f.Add(seed, mode)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		c := &wsConn{v5: mode%3 == 0, base64: mode%3 == 2}
		channel, payload, ok := c.decodeFrame(data)
		if !ok {
			return
		}
		if len(payload) >= len(data) {
			t.Fatalf("payload of %d bytes from a frame of %d", len(payload), len(data))
		}
		if channel == closeSignal && !c.v5 {
			t.Fatal("a close signal outside v5")
		}
		if sz, ok := parseResize(payload); ok && len(payload) > maxResizeMessage {
			t.Fatalf("a resize of %d bytes parsed: %+v", len(payload), sz)
		}
	})
}

// A resize stream of any content ends (at its end, or at the bound), reads
// no more than it holds, and closes the sizes it feeds.
func FuzzResizeStream(f *testing.F) {
	for _, seed := range []string{`{"Width":80,"Height":24}`, `{"Width":80,"Height":24}{"Width":1,"Height":1}`, `{"Width":`,
		`[]`, `"x"`, `{"Width":70000}`, "   \n\t", `{"Width":1,"Height":2,"Extra":{"a":[1,2,3]}}`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := &countingReader{r: bytes.NewReader(data)}
		sizes := make(chan wire.Size, 1)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range sizes {
			}
		}()
		readSizes(src, sizes)
		<-done
		if src.n > len(data) {
			t.Fatalf("read %d bytes of %d", src.n, len(data))
		}
	})
}
