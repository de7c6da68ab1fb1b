package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2"

	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/transcript"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Transcripts configures the sessions' transcripts (pkg/transcript).
type Transcripts struct {
	// Enabled records every session this replica runs.
	Enabled bool
	// Input records what viewers type too ("i" events). Typed passwords
	// end up in the transcript: off unless asked for.
	Input bool
	// MaxBytes bounds one session's transcript; past it the session goes
	// on unrecorded, and the transcript ends with a marker saying so.
	MaxBytes int64
	// Retention is how long a transcript is kept, whether or not its
	// session still exists.
	Retention time.Duration
	// StorageBytes bounds the TranscriptStream as a whole: the oldest
	// transcripts go first.
	StorageBytes int64
	// Redact: matches are masked in transcripts (never in the live
	// output), even when a match spans two pieces of output.
	Redact []*regexp.Regexp
}

const (
	// flushBytes: a recorder publishes once this much is buffered, or at
	// the session's next maintenance tick, whichever comes first. Storage
	// costs per message as well as per byte: a burst of output is stored
	// in few large messages.
	flushBytes = 256 << 10
	// eventBytes: output that comes within coalesce of a batch's first
	// byte is recorded in one event with it, up to eventBytes. A process
	// writing fast reaches the bridge in pieces of a few KiB, and each
	// event costs a redaction pass over the held-back tail and a line of
	// JSON: per piece, recording cost several times what relaying did.
	// Shorter than a frame of a 60 Hz screen, so a replay looks the same.
	eventBytes = 32 << 10
	// smallBytes: output in pieces under this size (typing, prompts) is
	// buffered in small buffers of the session's own; larger pieces, a
	// burst's, in the shared pools.
	smallBytes = 4 << 10
	// maxTranscriptMsg is the most one transcript message carries: lines
	// are at most an event's (eventBytes, escaped), well under it.
	maxTranscriptMsg = 1 << 20
	// maxRecordedSize bounds the terminal size a transcript records: a
	// player allocates every cell of it, and no screen shows more.
	maxRecordedSize = 1000
	coalesce        = 10 * time.Millisecond
)

func createTranscriptStream(ctx context.Context, js jetstream.JetStream, t Transcripts, replicas int) error {
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        wire.TranscriptStream,
		Description: "terminal-apiserver: session transcripts (asciicast v2), kept for the retention period",
		Subjects:    wire.TranscriptSubjects(),
		MaxAge:      t.Retention,
		MaxBytes:    t.StorageBytes,
		MaxMsgSize:  maxTranscriptMsg + 1024,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Discard:     jetstream.DiscardOld,
		// How long a Nats-Msg-Id is remembered: a message sent again
		// within it is dropped if the first was stored (recorder.send
		// looks at what is stored when it sends one later).
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", wire.TranscriptStream, err)
	}
	return nil
}

// Buffers of the recorders for bursts of output, shared by all sessions:
// a burst reuses them rather than allocating (and clearing) new ones. A
// session typing takes small buffers of its own, which it drops at each
// tick: an idle session holds none.
var (
	rawBuffers  = newBufferPool(eventBytes + 4<<10)
	lineBuffers = newBufferPool(flushBytes + eventBytes*6/5)
)

type bufferPool struct {
	pool sync.Pool
	size int
}

func newBufferPool(size int) *bufferPool {
	p := &bufferPool{size: size}
	p.pool.New = func() any { b := make([]byte, 0, size); return &b }
	return p
}

func (p *bufferPool) get() []byte { return (*p.pool.Get().(*[]byte))[:0] }

// put keeps b for reuse if it is one of the pool's (a buffer that began
// small, or grew far past the pool's size, the garbage collector takes).
func (p *bufferPool) put(b []byte) {
	if cap(b) >= p.size && cap(b) <= 2*p.size {
		b = b[:0]
		p.pool.Put(&b)
	}
}

// recorder writes one session's transcript: lines are buffered and
// published to its subject in order, asynchronously, so that recording
// never waits on storage in the shell's path.
type recorder struct {
	js      jetstream.JetStream
	subject string
	// first: headers of the first message (whose transcript it is), nil
	// once sent
	first   nats.Header
	input   bool
	max     int64
	start   time.Time
	session string // namespace/name, for the log

	mu     sync.Mutex
	redact *transcript.Redactor
	// raw: output not yet made an event (a batch), which began at rawAt
	raw   []byte
	rawAt time.Duration
	buf   []byte
	// tail: the first bytes of a character whose rest the process has
	// not written yet (an event's data is text: a split character would
	// become two U+FFFD).
	tail    []byte
	written int64 // bytes of lines taken (published or buffered)
	cut     bool
	// closed: the end is written; whatever comes later (a last resize,
	// a maintenance flush) is not recorded after it
	closed bool
	// the messages in flight, in order, checked at the next flush
	pending []pendingMsg
	// sent numbers the messages (their Nats-Msg-Id)
	sent uint64
}

// pendingMsg is a transcript message storage has not answered yet. One
// whose answer was lost with the NATS connection (as output frames' are,
// see output.land) is sent again, with those after it; its Nats-Msg-Id has
// JetStream drop the copy if the first was stored after all.
type pendingMsg struct {
	msg   *nats.Msg
	n     uint64                 // its number, in its Nats-Msg-Id
	ack   jetstream.PubAckFuture // nil: to be sent (again)
	first time.Time              // when it was first sent (zero: not yet)
	// refused: its last sending was answered with no stream (a stream
	// without a leader): not stored, so no need to ask before sending it
	// again.
	refused bool
	// done: answered (stored, or refused and counted); futures deliver
	// their answer once, so it is kept here when read.
	done bool
}

// maxPendingBytes bounds what one transcript holds unanswered (NATS being
// away, or its stream without a leader): past it, what comes is lost (and
// counted) rather than kept. A message is sent again for as long as an
// output frame is (outputRetryFor): a stream's leader election takes
// seconds, and each resend is answered at once while it has none.
const maxPendingBytes = 2 << 20

var errTranscriptBacklog = errors.New("too much of the transcript awaits storage")

func newRecorder(js jetstream.JetStream, subj wire.Subjects, t Transcripts, namespace, name string, start time.Time, h transcript.Header) *recorder {
	r := &recorder{js: js, subject: subj.Cast(), input: t.Input, max: t.MaxBytes, start: start, session: namespace + "/" + name,
		redact: transcript.NewRedactor(t.Redact),
		first:  nats.Header{wire.NamespaceHeader: []string{namespace}, wire.NameHeader: []string{name}}}
	r.buf = transcript.AppendHeader(nil, h)
	r.written = int64(len(r.buf))
	// At once: a transcript exists from its session's start (the
	// subresource finds it, and says whose it is).
	r.flushLocked()
	return r
}

// add buffers an event, or cuts the transcript if it would pass the bound
// (caller holds mu). The line is written into the buffer directly (a batch
// of output is tens of KiB: no copy of it is kept per session).
func (r *recorder) add(at time.Duration, code string, data []byte) {
	if r.cut {
		// Not encoded: bytes of output, near enough to the lines they
		// would have made.
		metrics.TranscriptBytesDropped.Add(float64(len(data)))
		return
	}
	if need := len(r.buf) + len(data) + len(data)/8 + 64; need > cap(r.buf) && need >= smallBytes && cap(r.buf) < flushBytes {
		// A burst: into a pooled buffer rather than growing a small one.
		r.buf = append(lineBuffers.get(), r.buf...)
	}
	n := len(r.buf)
	r.buf = transcript.AppendEvent(r.buf, at, code, data)
	line := int64(len(r.buf) - n)
	if r.max > 0 && r.written+line > r.max {
		r.buf = r.buf[:n]
		r.cut = true
		metrics.TranscriptBytesDropped.Add(float64(line))
		r.buf = transcript.AppendEvent(r.buf, time.Since(r.start), transcript.Marker,
			fmt.Sprintf("transcript cut: it reached its limit of %d bytes; the session went on unrecorded", r.max))
		r.written += int64(len(r.buf) - n)
		return
	}
	r.written += line
	if len(r.buf) >= flushBytes {
		r.flushLocked()
	}
}

// whileOpen runs f with the lock held, unless there is no recorder or it
// has written its end.
func (r *recorder) whileOpen(f func()) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		f()
	}
}

// event records an input or resize event, after the output before it:
// what the redactor holds back goes first (so a secret the process is in
// the middle of printing when a resize or recorded input comes may be
// recorded in part; only then).
func (r *recorder) event(code string, data []byte) {
	r.whileOpen(func() {
		r.batchDone()
		r.recordAll(r.redact.Flush())
		r.addSplit(time.Since(r.start), code, data)
	})
}

func (r *recorder) recordAll(segs []transcript.Segment) {
	for _, s := range segs {
		r.record(s.Data, s.At)
	}
}

// output records what the process wrote: batched (see coalesce).
func (r *recorder) output(p []byte) {
	r.whileOpen(func() {
		if r.cut {
			// Past its limit: counted, not batched, redacted or encoded.
			metrics.TranscriptBytesDropped.Add(float64(len(p)))
			return
		}
		now := time.Since(r.start)
		if len(r.raw) > 0 && now-r.rawAt > coalesce {
			r.batchDone()
		}
		if len(r.raw) == 0 {
			r.rawAt = now
			if r.raw == nil && len(p) >= smallBytes {
				r.raw = rawBuffers.get()
			}
		}
		r.raw = append(r.raw, p...)
		if len(r.raw) >= eventBytes {
			r.batchDone()
		}
	})
}

// batchDone records the batch of output as an event (caller holds mu).
func (r *recorder) batchDone() {
	if len(r.raw) == 0 {
		return
	}
	r.recordAll(r.redact.Write(r.raw, r.rawAt))
	r.raw = r.raw[:0]
}

// record takes output that may be recorded (redacted) as an event at at
// (caller holds mu).
func (r *recorder) record(p []byte, at time.Duration) {
	data := p
	if len(r.tail) > 0 {
		data = append(r.tail, p...)
	}
	cut := utf8Cut(data)
	r.tail = append([]byte(nil), data[cut:]...)
	r.addSplit(at, transcript.Output, data[:cut])
}

// addSplit adds data as events of at most eventBytes, cut between
// characters: lines stay well under what one stored message may hold, and
// a replay need not hold one huge event (caller holds mu).
func (r *recorder) addSplit(at time.Duration, code string, data []byte) {
	for len(data) > 0 {
		n := len(data)
		if n > eventBytes {
			if n = utf8Cut(data[:eventBytes]); n == 0 {
				n = eventBytes // not text: cut anywhere
			}
		}
		r.add(at, code, data[:n])
		data = data[n:]
	}
}

// typed records what viewers typed, if input is recorded.
func (r *recorder) typed(p []byte) {
	if r != nil && r.input {
		r.event(transcript.Input, p)
	}
}

// resized records a new terminal size.
func (r *recorder) resized(sz wire.Size) {
	r.event(transcript.Resize, []byte(transcript.Size(min(int(sz.Cols), maxRecordedSize), min(int(sz.Rows), maxRecordedSize))))
}

// flush publishes what is buffered.
func (r *recorder) flush() {
	r.whileOpen(func() {
		r.batchDone()
		r.flushLocked()
		// An idle session keeps no batch buffer.
		rawBuffers.put(r.raw)
		r.raw = nil
	})
}

func (r *recorder) flushLocked() {
	r.reap()
	for rest := r.buf; len(rest) > 0; {
		n := len(rest)
		if n > maxTranscriptMsg {
			// Whole lines only: a message ends at a line's end.
			if n = bytes.LastIndexByte(rest[:maxTranscriptMsg], '\n') + 1; n == 0 {
				n = bytes.IndexByte(rest, '\n') + 1
			}
		}
		// A copy of its own size: the message is kept until storage
		// answers, and the buffer goes back to the pool now.
		r.publish(&nats.Msg{Subject: r.subject, Data: append([]byte(nil), rest[:n]...), Header: r.first})
		r.first = nil
		rest = rest[n:]
	}
	lineBuffers.put(r.buf)
	r.buf = nil
}

// publish sends a new message (caller holds mu), after those waiting to be
// sent again: never ahead of them.
func (r *recorder) publish(msg *nats.Msg) {
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	if len(msg.Data) > 0 {
		backlog := len(msg.Data)
		for _, p := range r.pending {
			backlog += len(p.msg.Data)
		}
		if backlog > maxPendingBytes {
			r.failed(errTranscriptBacklog, len(msg.Data))
			return
		}
	}
	r.sent++
	msg.Header.Set(jetstream.MsgIDHeader, r.subject+"-"+strconv.FormatUint(r.sent, 10))
	r.pending = append(r.pending, pendingMsg{msg: msg, n: r.sent})
	metrics.TranscriptBytesWritten.Add(float64(len(msg.Data)))
	r.send()
}

// storedUpTo is the number of the last message stored on the transcript's
// subject (0: none, or not known).
func (r *recorder) storedUpTo() uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := r.js.Stream(ctx, wire.TranscriptStream)
	if err != nil {
		return 0
	}
	m, err := st.GetLastMsgForSubject(ctx, r.subject)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(strings.TrimPrefix(m.Header.Get(jetstream.MsgIDHeader), r.subject+"-"), 10, 64)
	return n
}

// send sends the pending messages that wait to be, in order, while the
// connection is up: one sent into a reconnect buffer could be stored ahead
// of one whose answer was lost before.
func (r *recorder) send() {
	stored, checked := uint64(0), false
	for i := range r.pending {
		p := &r.pending[i]
		if p.ack != nil || p.done {
			continue
		}
		if !r.js.Conn().IsConnected() {
			return
		}
		if !p.first.IsZero() && !p.refused {
			// Sent before: stored already if the subject holds it or
			// one after it (past the duplicate window as well).
			if !checked {
				stored, checked = r.storedUpTo(), true
			}
			if p.n <= stored {
				p.done = true
				continue
			}
		}
		if p.first.IsZero() {
			p.first = time.Now()
		}
		ack, err := r.js.PublishMsgAsync(p.msg)
		switch {
		case err == nil:
			p.ack = ack
		case retryablePublish(err) && p.retryable():
			return
		default:
			r.failed(err, len(p.msg.Data))
			p.done = true
		}
	}
}

// answer reads p's answer if it has come, or within wait (nil: no wait).
// A lost one marks p and every message after it (i) to be sent again.
func (r *recorder) answer(i int, wait <-chan time.Time) {
	p := &r.pending[i]
	if p.done || p.ack == nil {
		return
	}
	var err error
	select {
	case <-p.ack.Ok():
	case err = <-p.ack.Err():
	case <-wait:
		return
	default:
		if wait == nil {
			return
		}
		select {
		case <-p.ack.Ok():
		case err = <-p.ack.Err():
		case <-wait:
			return
		}
	}
	if err != nil && retryablePublish(err) && p.retryable() {
		// Refused: the stream has no leader, and those sent after it
		// met the same (the rare one stored meanwhile is a copy that
		// JetStream drops by its Nats-Msg-Id). Asking the stream what it
		// holds would wait out a timeout, with the output path waiting.
		refused := errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
		for j := i; j < len(r.pending); j++ {
			if !r.pending[j].done {
				r.pending[j].ack, r.pending[j].refused = nil, refused
			}
		}
		return
	}
	if err != nil {
		r.failed(err, len(p.msg.Data))
	}
	p.done = true
}

// retryable says whether p may be sent again.
func (p *pendingMsg) retryable() bool {
	return time.Since(p.first) < outputRetryFor
}

// reap forgets the messages storage has answered, counting refusals, and
// sends again those whose answer was lost. It looks no further than the
// first message still unanswered: answers come in order, and a recorder
// that writes faster than storage answers must not scan its whole backlog
// at every flush.
func (r *recorder) reap() {
	done := 0
	for i := range r.pending {
		r.answer(i, nil)
		if !r.pending[i].done {
			break
		}
		done++
	}
	// The answered ones' slots are cleared: the messages go.
	clear(r.pending[:done])
	r.pending = r.pending[done:]
	if len(r.pending) == 0 {
		r.pending = nil
	}
	r.send()
}

// settle waits for storage's answer to every pending message, sending again
// those whose answer was lost, for up to 10 s; what is left then is lost.
// Only once closed: then nothing else touches pending.
func (r *recorder) settle() {
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		r.reap()
		if len(r.pending) == 0 {
			return
		}
		if r.pending[0].ack == nil {
			// Waiting for the connection to send it again.
			select {
			case <-deadline.C:
			case <-time.After(100 * time.Millisecond):
				continue
			}
		} else if r.answer(0, deadline.C); !r.pending[0].done && r.pending[0].ack != nil {
			// The deadline passed.
		} else {
			continue
		}
		for _, p := range r.pending {
			if !p.done {
				r.failed(context.DeadlineExceeded, len(p.msg.Data))
			}
		}
		r.pending = nil
		return
	}
}

func (r *recorder) failed(err error, n int) {
	metrics.JetStreamErrors.WithLabelValues(metrics.PublishTranscript).Inc()
	metrics.TranscriptBytesDropped.Add(float64(n))
	klog.ErrorS(err, "Storing a transcript failed: part of it is lost", "session", r.session, "bytes", n)
}

// close publishes the rest and the end, and waits until storage has them.
func (r *recorder) close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.batchDone()
	r.recordAll(r.redact.Flush())
	if len(r.tail) > 0 {
		// The process ended inside a character: what it wrote is all there is.
		r.add(time.Since(r.start), transcript.Output, r.tail)
		r.tail = nil
	}
	rawBuffers.put(r.raw)
	r.raw = nil
	r.flushLocked()
	r.publish(&nats.Msg{Subject: r.subject, Header: nats.Header{wire.EndHeader: []string{"true"}}})
	r.mu.Unlock()
	// Without the lock: closed, nothing but settle touches pending now.
	r.settle()
}
