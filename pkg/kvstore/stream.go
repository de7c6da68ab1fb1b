package kvstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
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
	// TombstoneTTL is how long a deletion stays in the stream. Replicas
	// that restart later never need it: the key is simply absent.
	TombstoneTTL time.Duration
}

func (c *StreamConfig) defaults() {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.History == 0 {
		c.History = 10000
	}
	if c.TombstoneTTL == 0 {
		c.TombstoneTTL = 15 * time.Minute
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
}

// errConflict means the key changed since the expected revision.
var errConflict = errors.New("revision conflict")

func openBackend(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (*backend, error) {
	cfg.defaults()
	storageType := jetstream.FileStorage
	if cfg.Memory {
		storageType = jetstream.MemoryStorage
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.Name,
		Description:       "terminal-apiserver objects: one subject per key, the stream sequence is the resourceVersion",
		Subjects:          []string{cfg.Subject + ".>"},
		MaxMsgsPerSubject: 1,
		Storage:           storageType,
		Replicas:          cfg.Replicas,
		Discard:           jetstream.DiscardOld,
		AllowMsgTTL:       true,
		// A TTL'd key that expires must reach watchers as a deletion; the
		// server writes a marker message for it. Keep markers long enough
		// for every replica's consumer to see them.
		SubjectDeleteMarkerTTL: 10 * time.Minute,
		DenyDelete:             true,
		DenyPurge:              true,
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
	b := &backend{js: js, stream: stream, cfg: cfg, idx: newIndex(cfg.History)}
	loaded := info.State.LastSeq

	cons, err := js.OrderedConsumer(ctx, cfg.Name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s consumer: %w", cfg.Name, err)
	}
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
		b.idx.apply(rev, key, msg.Data(), isDelete(msg.Headers()), rev > loaded)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		klog.V(2).InfoS("Stream consumer", "stream", cfg.Name, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("stream %s consume: %w", cfg.Name, err)
	}
	if err := b.idx.waitFor(ctx, loaded); err != nil {
		b.close()
		return nil, fmt.Errorf("load stream %s up to %d: %w", cfg.Name, loaded, err)
	}
	return b, nil
}

func (b *backend) close() {
	if b.consume != nil {
		b.consume.Stop()
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
func (b *backend) sync(ctx context.Context) (uint64, error) {
	rev, err := b.currentRev(ctx)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.idx.waitFor(ctx, rev); err != nil {
		return 0, fmt.Errorf("stream %s: index did not reach revision %d: %w", b.cfg.Name, rev, err)
	}
	return rev, nil
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
// has no message at all) and returns the new revision.
func (b *backend) put(ctx context.Context, key string, value []byte, expected uint64, ttl time.Duration) (uint64, error) {
	msg := &nats.Msg{Subject: b.subject(key), Data: value, Header: nats.Header{}}
	opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expected)}
	if ttl > 0 {
		opts = append(opts, jetstream.WithMsgTTL(ttl))
	}
	return b.publish(ctx, key, msg, opts)
}

// del writes a tombstone if the key is still at expected.
func (b *backend) del(ctx context.Context, key string, expected uint64) (uint64, error) {
	msg := &nats.Msg{Subject: b.subject(key), Header: nats.Header{opHeader: []string{opDelete}}}
	return b.publish(ctx, key, msg, []jetstream.PublishOpt{
		jetstream.WithExpectLastSequencePerSubject(expected),
		jetstream.WithMsgTTL(b.cfg.TombstoneTTL),
	})
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
