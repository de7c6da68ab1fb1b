package attach

import (
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/meshery/terminal-apiserver/pkg/resume"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// A frame can be stored after frames that were written after it: the
// bridge sends again the frames whose answer a dropped NATS connection lost
// or that got none within wire.FrameAckWait, while those it had sent behind
// them may already be stored. So a frame from JetStream that starts past
// what was written is held, up to aheadFrames of them for up to
// wire.FrameReorderWait, while what lies between may still come; after
// that, it is taken as lost. Frames in flight are at most the bridge's
// window (8): twice that leaves room.
const aheadFrames = 16

// resumer writes output from byte offset next on, in order.
type resumer struct {
	w    io.Writer
	next uint64
	// streamed: a frame from JetStream was written. A gap before the
	// first is the scrollback's trim (a late or returning viewer), not a
	// frame still to come: it is not waited for.
	streamed bool
	// ahead are the frames held, by offset; timer ends the wait for what
	// lies before the first.
	ahead []wire.Frame
	timer *time.Timer
	// wait is how long to hold them (0: wire.FrameReorderWait).
	wait time.Duration
}

// write writes a frame from JetStream whose first byte is at offset (a
// header value).
func (r *resumer) write(data []byte, offset string) error {
	start, err := strconv.ParseUint(offset, 10, 64)
	if err != nil {
		_, err := r.w.Write(data) // a frame without offset: nothing to resume by
		return err
	}
	if start > r.next && r.streamed {
		r.hold(wire.Frame{Offset: start, Data: data})
		if len(r.ahead) > aheadFrames {
			return r.giveUp()
		}
		return nil
	}
	r.streamed = true
	if err := r.writeAt(data, start); err != nil {
		return err
	}
	return r.release()
}

// live writes a frame from the fast path if it continues what was written.
// One further on is skipped: JetStream delivers what lies between, and then
// that frame too.
func (r *resumer) live(f wire.Frame) error {
	if f.Offset > r.next {
		return nil
	}
	if err := r.writeAt(f.Data, f.Offset); err != nil {
		return err
	}
	return r.release()
}

// hold keeps a frame that starts past next, in offset order.
func (r *resumer) hold(f wire.Frame) {
	i, found := slices.BinarySearchFunc(r.ahead, f.Offset, func(h wire.Frame, off uint64) int {
		return cmpUint(h.Offset, off)
	})
	if found {
		if len(f.Data) > len(r.ahead[i].Data) {
			r.ahead[i] = f
		}
		return
	}
	r.ahead = slices.Insert(r.ahead, i, f)
	if r.timer == nil {
		wait := r.wait
		if wait == 0 {
			wait = wire.FrameReorderWait
		}
		r.timer = time.NewTimer(wait)
	}
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// release writes the held frames that now continue what was written.
func (r *resumer) release() error {
	for len(r.ahead) > 0 && r.ahead[0].Offset <= r.next {
		f := r.ahead[0]
		r.ahead = r.ahead[1:]
		if err := r.writeAt(f.Data, f.Offset); err != nil {
			return err
		}
	}
	if len(r.ahead) == 0 {
		r.ahead = nil
		r.stop()
	}
	return nil
}

// expired fires when the wait for what lies before a held frame is over
// (nil when none is held).
func (r *resumer) expired() <-chan time.Time {
	if r.timer == nil {
		return nil
	}
	return r.timer.C
}

// giveUp writes the held frames, each gap taken as lost.
func (r *resumer) giveUp() error {
	held := r.ahead
	r.ahead = nil
	r.stop()
	for _, f := range held {
		if err := r.writeAt(f.Data, f.Offset); err != nil {
			return err
		}
	}
	return nil
}

// stop ends the wait, if any.
func (r *resumer) stop() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}

// writeAt writes data, the output from byte start on: the part not written
// yet, after a notice if output between was lost.
func (r *resumer) writeAt(data []byte, start uint64) error {
	end := start + uint64(len(data))
	switch {
	case end <= r.next:
		return nil // seen before the reconnect
	case start > r.next:
		// The scrollback no longer holds what was asked for: say so rather
		// than splice two distant parts of the screen together. Clients
		// count it as the bytes it stands for when it opens an attach
		// (package resume); in the middle of one (a viewer that fell
		// behind) they count it as output, and their next reattach may
		// repeat the difference: a viewer that is merely slow keeps its
		// attach, whatever client it uses.
		if _, err := io.WriteString(r.w, resume.Notice(start-r.next)); err != nil {
			return err
		}
	case start < r.next:
		data = data[r.next-start:]
	}
	r.next = end
	_, err := r.w.Write(data)
	return err
}
