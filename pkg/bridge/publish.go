package bridge

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/meshery/terminal-apiserver/pkg/metrics"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

func (b *Bridge) publishOutput(subj wire.Subjects, s *session) func(ctx context.Context, seq uint64, frame []byte) (func() error, error) {
	out := subj.Out()
	// Frames are published one after the other (one drainer at a time).
	var offset uint64
	return func(ctx context.Context, seq uint64, frame []byte) (func() error, error) {
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
		offset += uint64(len(frame))
		return func() error {
			select {
			case <-ack.Ok():
				return nil
			case err := <-ack.Err():
				metrics.JetStreamErrors.WithLabelValues(metrics.PublishOutput).Inc()
				return err
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
