package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// outputRetryFor is how long a frame that NATS may not have stored (its
// connection dropped) is sent again before the session's output fails: a
// NATS server's restart, a move to another server (lame duck, a rotated
// password) or a leader election takes seconds.
const outputRetryFor = 2 * time.Minute

var errNoAck = errors.New("no answer from JetStream within " + wire.FrameAckWait.String())

// retryablePublish says whether a frame that failed with err may be lost
// only with the connection or a leader, so that sending it again may store
// it (a copy of one stored already is skipped by viewers: they go by
// offset).
func retryablePublish(err error) bool {
	return errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrTooManyStalledMsgs) ||
		errors.Is(err, errNoAck)
}

func (b *Bridge) publishOutput(subj wire.Subjects, s *session) func(ctx context.Context, seq, offset uint64, frame []byte) (func() error, error) {
	out := subj.Out()
	return func(ctx context.Context, seq, offset uint64, frame []byte) (func() error, error) {
		s.touch()
		ack, err := b.js.PublishMsgAsync(&nats.Msg{
			Subject: out, Data: frame,
			Header: nats.Header{
				wire.SeqHeader:    []string{strconv.FormatUint(seq, 10)},
				wire.OffsetHeader: []string{strconv.FormatUint(offset, 10)},
			},
		})
		if err != nil {
			metrics.JetStreamErrors.WithLabelValues(metrics.PublishOutput).Inc()
			return nil, err
		}
		return func() error {
			t := time.NewTimer(wire.FrameAckWait)
			defer t.Stop()
			select {
			case <-ack.Ok():
				return nil
			case err := <-ack.Err():
				metrics.JetStreamErrors.WithLabelValues(metrics.PublishOutput).Inc()
				return err
			case <-t.C:
				metrics.JetStreamErrors.WithLabelValues(metrics.PublishOutput).Inc()
				return errNoAck
			case <-ctx.Done():
				return ctx.Err()
			}
		}, nil
	}
}

func (b *Bridge) publishEvent(ctx context.Context, subj wire.Subjects, ev wire.Event) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err = b.cfg.JetStream.Publish(ctx, subj.Ctl(), data); err != nil {
		metrics.JetStreamErrors.WithLabelValues(metrics.PublishEvent).Inc()
	}
	return err
}
