package kvstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/klog/v2"
)

const (
	// opHeader marks our deletion tombstones; every other message is a put.
	opHeader = "Terminal-Op"
	opDelete = "DEL"
	// markerHeader is set by nats-server on the marker it writes when a
	// subject's last message expires (a TTL'd object): also a deletion.
	markerHeader = "Nats-Marker-Reason"
	// prevHeader carries the revision of the live value a write replaced
	// (0: none). A consumer whose index disagrees has missed a change.
	prevHeader = "Terminal-Prev"
	// initToken is the subject token of the stream's first message; '~' is
	// outside the base64url alphabet, so it never collides with a key.
	initToken = "~init"
)

// StreamConfig names and sizes the JetStream stream behind one store.
type StreamConfig struct {
	// Name of the stream, e.g. TERMINAL_SESSIONS.
	Name string
	// Subject prefix; keys live under "<Subject>.<encoded key>".
	Subject string
	// Replicas of the stream (1 for the embedded server, 3 for a cluster).
	Replicas int
	// Memory keeps the stream in memory (tests).
	Memory bool
	// History is how many recent changes each replica keeps for watches
	// and exact-revision lists; older resourceVersions get 410 Gone.
	History int
	// HistoryBytes bounds that history in bytes as well (0: no bound).
	HistoryBytes int
	// A replica's consumer must see every change of a key, so a message may
	// only leave the stream once every consumer is past it. Old revisions
	// and deleted keys are therefore purged by a compactor, not by a
	// per-key limit at write time (which drops a revision the instant the
	// next is written, before a lagging consumer has read it). Every
	// CompactInterval, each replica purges what was superseded before its
	// previous pass: consumers have had a whole interval to read it. A
	// consumer that still misses a change detects it (see prevHeader) and
	// expires its watches, as etcd compaction would.
	CompactInterval time.Duration
	// MaxPerKey caps the revisions kept per key between compactions, so a
	// runaway writer cannot grow the stream without bound.
	MaxPerKey int
}

func (c *StreamConfig) defaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.History == 0 {
		c.History = 10000
	}
	if c.CompactInterval == 0 {
		c.CompactInterval = 10 * time.Second
	}
	if c.MaxPerKey == 0 {
		c.MaxPerKey = 1024
	}
}

// backend is the JetStream side of a store: compare-and-set writes, reads
// from the stream leader, and an ordered consumer feeding the index.
type backend struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	cfg     StreamConfig
	idx     *index
	consume jetstream.ConsumeContext
	cons    jetstream.Consumer
	stop    context.CancelFunc
	done    chan struct{}

	mu    sync.Mutex
	dirty map[string]keyState // keys with messages to compact away
}

// keyState is a key written since the compactor last cleaned it up: its
// latest message and whether that is a deletion.
type keyState struct {
	latest  uint64
	deleted bool
}

// errConflict means the key changed since the expected revision.
var errConflict = errors.New("revision conflict")

// streamRequestTimeout bounds one stream request of createStream.
const streamRequestTimeout = 10 * time.Second

// createStream creates or updates a stream, asking again until ctx ends: a
// NATS cluster that has just started drops the requests it gets before
// its servers have elected a JetStream meta leader (the request then times
// out), and may refuse a replicated stream until its peers have joined.
func createStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	var said error // the last answer that was not a timeout: the likelier cause
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, streamRequestTimeout)
		stream, err := js.CreateOrUpdateStream(rctx, cfg)
		cancel()
		if err == nil {
			return stream, nil
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			said = err
		}
		if attempt == 0 {
			klog.InfoS("Waiting for JetStream to create a stream", "stream", cfg.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			if said != nil {
				return nil, said
			}
			return nil, err
		case <-time.After(time.Second):
		}
	}
}

func openBackend(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (*backend, error) {
	cfg.defaults()
	storageType := jetstream.FileStorage
	if cfg.Memory {
		storageType = jetstream.MemoryStorage
	}
	stream, err := createStream(ctx, js, jetstream.StreamConfig{
		Name:              cfg.Name,
		Description:       "terminal-apiserver objects: one subject per key, the stream sequence is the resourceVersion",
		Subjects:          []string{cfg.Subject + ".>"},
		MaxMsgsPerSubject: int64(cfg.MaxPerKey),
		Storage:           storageType,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardOld,
		AllowMsgTTL:       true,
		// A TTL'd key that expires must reach watchers as a deletion; the
		// server writes a marker message for it. The server also raises
		// every TTL to at least the markers' own, so keep it at the 1s
		// minimum: storage TTLs are seconds. (TerminalSessions never use
		// TTLs; the storage contract has them.)
		SubjectDeleteMarkerTTL: time.Second,
		AllowRollup:            true,
		DenyDelete:             true,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	// Revision 0 means "any" to the API, so a store's revisions start at 1,
	// as etcd's do: the first replica to open an empty stream writes a
	// marker (the expectation makes racing replicas write it once).
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: cfg.Subject + "." + initToken, Data: []byte("terminal-apiserver")},
		jetstream.WithExpectLastSequence(0))
	var apiErr *jetstream.APIError
	if err != nil && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return nil, fmt.Errorf("initialize stream %s: %w", cfg.Name, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", cfg.Name, err)
	}
	b := &backend{js: js, stream: stream, cfg: cfg, idx: newIndex(cfg.History, cfg.HistoryBytes), dirty: map[string]keyState{}}
	loaded := info.State.LastSeq

	// Start from each key's latest message, then follow every change.
	cons, err := js.OrderedConsumer(ctx, cfg.Name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s consumer: %w", cfg.Name, err)
	}
	b.cons = cons
	b.consume, err = cons.Consume(func(msg jetstream.Msg) {
		md, err := msg.Metadata()
		if err != nil {
			klog.ErrorS(err, "Skipping message without metadata", "stream", cfg.Name)
			return
		}
		rev := md.Sequence.Stream
		key, err := b.decodeSubject(msg.Subject())
		if err != nil {
			if !strings.HasSuffix(msg.Subject(), "."+initToken) {
				klog.ErrorS(err, "Skipping message with a foreign subject", "stream", cfg.Name, "subject", msg.Subject())
			}
			b.idx.advance(rev)
			return
		}
		deleted := isDelete(msg.Headers())
		b.track(key, deleted, rev)
		prev, hasPrev := parsePrev(msg.Headers())
		b.idx.apply(rev, key, msg.Data(), deleted, prev, hasPrev, rev > loaded)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		klog.V(2).InfoS("Stream consumer", "stream", cfg.Name, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("stream %s consume: %w", cfg.Name, err)
	}
	if _, err := b.sync(ctx); err != nil {
		b.close()
		return nil, fmt.Errorf("load stream %s: %w", cfg.Name, err)
	}
	jctx, stop := context.WithCancel(context.Background())
	b.stop, b.done = stop, make(chan struct{})
	go b.compactor(jctx)
	return b, nil
}

func (b *backend) close() {
	if b.consume != nil {
		b.consume.Stop()
	}
	if b.stop != nil {
		b.stop()
		<-b.done
	}
}

func parsePrev(h nats.Header) (uint64, bool) {
	v := h.Get(prevHeader)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// track notes a key's new message for the compactor: older messages of the
// key, or the whole key once deleted, are now superseded.
func (b *backend) track(key string, deleted bool, seq uint64) {
	b.mu.Lock()
	b.dirty[key] = keyState{latest: seq, deleted: deleted}
	b.mu.Unlock()
}

// compactor purges superseded revisions and deleted keys. Every replica runs
// it; purges bounded by sequence are idempotent and never touch a newer
// write of the key.
func (b *backend) compactor(ctx context.Context) {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.CompactInterval)
	defer tick.Stop()
	cut := b.idx.currentRev() // everything up to here was read by us before the next pass
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		next := b.idx.currentRev()
		b.compact(ctx, cut)
		cut = next
	}
}

// compact purges, for each key written since its last compaction, the
// messages superseded at or before cut: all of a deleted key's, all but the
// latest of a live key's.
func (b *backend) compact(ctx context.Context, cut uint64) {
	b.mu.Lock()
	below := map[string]uint64{} // purge the key's messages below this sequence
	for k, st := range b.dirty {
		switch {
		case st.latest > cut:
			below[k] = cut + 1 // written since the cut: keep what the cut has not covered
		case st.deleted:
			below[k] = st.latest + 1
		default:
			below[k] = st.latest
		}
	}
	b.mu.Unlock()
	for k, seq := range below {
		err := b.stream.Purge(ctx, jetstream.WithPurgeSubject(b.subject(k)), jetstream.WithPurgeSequence(seq))
		if err != nil {
			if ctx.Err() == nil {
				klog.V(2).InfoS("Compacting a key failed; will retry", "stream", b.cfg.Name, "key", k, "err", err)
			}
			continue
		}
		b.mu.Lock()
		if st, ok := b.dirty[k]; ok && st.latest <= cut {
			delete(b.dirty, k) // clean, and not written since the cut
		}
		b.mu.Unlock()
	}
}

func isDelete(h nats.Header) bool {
	return h.Get(opHeader) == opDelete || h.Get(markerHeader) != ""
}

// Keys are arbitrary strings ("/registry/x/ns/a.b"), but NATS subjects split
// on '.' and forbid spaces and wildcards: one base64url token per key keeps
// every key a single, literal token.
func (b *backend) subject(key string) string {
	return b.cfg.Subject + "." + base64.RawURLEncoding.EncodeToString([]byte(key))
}

func (b *backend) decodeSubject(subj string) (string, error) {
	tok, ok := strings.CutPrefix(subj, b.cfg.Subject+".")
	if !ok {
		return "", fmt.Errorf("subject %q outside %s.>", subj, b.cfg.Subject)
	}
	k, err := base64.RawURLEncoding.DecodeString(tok)
	return string(k), err
}

// currentRev is the stream's last sequence, read from the stream leader: the
// revision a consistent read must reflect.
func (b *backend) currentRev(ctx context.Context) (uint64, error) {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", b.cfg.Name, err)
	}
	return info.State.LastSeq, nil
}

// sync waits until the index reflects every write acknowledged before the
// call, and returns that revision.
//
// The stream's last sequence is the target, but the compactor may have
// purged that very message (a deleted key), so the index can't always reach
// it by applying messages. Once the consumer has nothing pending and the
// index has applied all it was delivered, every message up to the target
// that still exists has been applied: the index is then at the target.
func (b *backend) sync(ctx context.Context) (uint64, error) {
	rev, err := b.currentRev(ctx)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		short, stop := context.WithTimeout(ctx, 100*time.Millisecond)
		err := b.idx.waitFor(short, rev)
		stop()
		if err == nil {
			return rev, nil
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("stream %s: index did not reach revision %d: %w", b.cfg.Name, rev, ctx.Err())
		}
		info, err := b.cons.Info(ctx)
		if err != nil {
			continue
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			if err := b.idx.waitFor(ctx, info.Delivered.Stream); err != nil {
				return 0, fmt.Errorf("stream %s: index did not reach delivered revision %d: %w", b.cfg.Name, info.Delivered.Stream, err)
			}
			b.idx.advance(rev)
			return rev, nil
		}
	}
}

// get reads a key's latest record from the stream leader; nil when absent.
// tombstone is the sequence of a deletion marker still in the stream (a
// create must name it as the expected last sequence).
func (b *backend) get(ctx context.Context, key string) (rec *record, tombstone uint64, err error) {
	msg, err := b.stream.GetLastMsgForSubject(ctx, b.subject(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get %q: %w", key, err)
	}
	if isDelete(msg.Header) {
		return nil, msg.Sequence, nil
	}
	return newRecord(msg.Data, msg.Sequence), 0, nil
}

// put writes value if the key's last sequence is still expected (0: the key
// has no message at all) and returns the new revision. live is the revision
// of the live value being replaced (0 for a creation).
func (b *backend) put(ctx context.Context, key string, value []byte, expected, live uint64, ttl time.Duration) (uint64, error) {
	msg := &nats.Msg{Subject: b.subject(key), Data: value, Header: nats.Header{prevHeader: []string{strconv.FormatUint(live, 10)}}}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expected)}
	if ttl > 0 {
		// When a TTL'd value expires, nothing older may resurface as the
		// key's value: it replaces the key's history. (Only the storage
		// tests use TTLs; TerminalSessions never expire this way.)
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	return b.publish(ctx, key, msg, opts)
}

// del writes a tombstone if the key is still at expected, the live value's
// revision.
func (b *backend) del(ctx context.Context, key string, expected uint64) (uint64, error) {
	msg := &nats.Msg{Subject: b.subject(key), Header: nats.Header{
		opHeader:   []string{opDelete},
		prevHeader: []string{strconv.FormatUint(expected, 10)},
	}}
	return b.publish(ctx, key, msg, []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expected)})
}

func (b *backend) publish(ctx context.Context, key string, msg *nats.Msg, opts []jetstream.PublishOpt) (uint64, error) {
	ack, err := b.js.PublishMsg(ctx, msg, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, errConflict
		}
		return 0, fmt.Errorf("write %q: %w", key, err)
	}
	return ack.Sequence, nil
}
