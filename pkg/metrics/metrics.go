// Package metrics is terminal-apiserver's own metrics, served with
// k8s.io/apiserver's on /metrics through component-base's registry. Every
// one is per replica (docs/metrics.md). Until Register runs they record
// nothing, as component-base's metrics do, so the packages that use them
// need no set-up in their tests.
package metrics

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

const namespace = "terminal"

// Attach modes, the values of ViewersAttached's mode label: the wire's.
const (
	ReadWrite = wire.ModeReadWrite
	ReadOnly  = wire.ModeReadOnly
)

var (
	// SessionsOpen is the sessions whose process this replica runs.
	SessionsOpen = metrics.NewGauge(&metrics.GaugeOpts{
		Namespace: namespace, Name: "sessions_open", StabilityLevel: metrics.ALPHA,
		Help: "Sessions whose process this replica runs.",
	})
	// SessionsOpened counts the sessions whose process this replica started.
	SessionsOpened = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: namespace, Name: "sessions_opened_total", StabilityLevel: metrics.ALPHA,
		Help: "Sessions whose process this replica started.",
	})
	// SessionsClosed counts the sessions this replica closed, by the
	// reason in their status (Exited, IdleTimeout, Deleted, ...).
	SessionsClosed = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "sessions_closed_total", StabilityLevel: metrics.ALPHA,
		Help: "Sessions this replica closed, by the reason in their status.",
	}, []string{"reason"})
	// ViewersAttached is the attaches this replica serves, by mode.
	ViewersAttached = metrics.NewGaugeVec(&metrics.GaugeOpts{
		Namespace: namespace, Name: "viewers_attached", StabilityLevel: metrics.ALPHA,
		Help: "Attaches this replica serves, by mode (read-write or read-only).",
	}, []string{"mode"})
	// OutputBytes counts the bytes the sessions' processes wrote.
	OutputBytes = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: namespace, Name: "output_bytes_total", StabilityLevel: metrics.ALPHA,
		Help: "Bytes of output written by the processes of the sessions this replica runs.",
	})
	// InputBytes counts the bytes written to the sessions' processes.
	InputBytes = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: namespace, Name: "input_bytes_total", StabilityLevel: metrics.ALPHA,
		Help: "Bytes of input written to the processes of the sessions this replica runs.",
	})
	// SetupDuration times a session from this replica taking it to its
	// process's first output byte.
	SetupDuration = metrics.NewHistogram(&metrics.HistogramOpts{
		Namespace: namespace, Name: "session_setup_duration_seconds", StabilityLevel: metrics.ALPHA,
		Help:    "Time from this replica taking a session to its process's first output byte.",
		Buckets: metrics.ExponentialBuckets(0.01, 2, 12), // 10 ms to 20 s
	})
	// EchoDuration times input written to a process to its next output.
	EchoDuration = metrics.NewHistogram(&metrics.HistogramOpts{
		Namespace: namespace, Name: "keystroke_echo_duration_seconds", StabilityLevel: metrics.ALPHA,
		Help:    "Time from input written to a session's process to the process's next output, as this replica sees it.",
		Buckets: metrics.ExponentialBuckets(0.00025, 2, 14), // 0.25 ms to 2 s
	})
	// TranscriptBytesWritten counts transcript bytes sent to storage.
	TranscriptBytesWritten = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: namespace, Name: "transcript_bytes_written_total", StabilityLevel: metrics.ALPHA,
		Help: "Bytes of transcripts (asciicast lines) this replica sent to storage.",
	})
	// TranscriptBytesDropped counts transcript bytes not kept: past a
	// session's bound, or refused by storage.
	TranscriptBytesDropped = metrics.NewCounter(&metrics.CounterOpts{
		Namespace: namespace, Name: "transcript_bytes_dropped_total", StabilityLevel: metrics.ALPHA,
		Help: "Bytes of transcripts this replica did not keep: past a session's transcript limit, or refused by storage.",
	})
	// JetStreamErrors counts failed JetStream operations, by operation.
	JetStreamErrors = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace: namespace, Name: "jetstream_errors_total", StabilityLevel: metrics.ALPHA,
		Help: "JetStream operations that failed, by operation (publish_output, publish_event, publish_transcript, follow).",
	}, []string{"operation"})
)

// JetStream operations, the values of JetStreamErrors' operation label.
const (
	PublishOutput = "publish_output"
	PublishEvent  = "publish_event"
	// PublishTranscript: a part of a transcript.
	PublishTranscript = "publish_transcript"
	Follow            = "follow"
)

var once sync.Once

// Register registers the metrics with the registry that /metrics serves;
// natsConnected reports this replica's NATS connection. Only the first
// call counts.
func Register(natsConnected func() bool) {
	once.Do(func() {
		legacyregistry.MustRegister(SessionsOpen, SessionsOpened, SessionsClosed, ViewersAttached,
			OutputBytes, InputBytes, SetupDuration, EchoDuration, TranscriptBytesWritten, TranscriptBytesDropped, JetStreamErrors)
		// Every label value from 0: increase() over a series that
		// appears with its first count would miss that count, and an
		// alert on the first failure after a restart would not fire.
		for _, reason := range []string{v1alpha1.ReasonExited, v1alpha1.ReasonDeleted, v1alpha1.ReasonIdleTimeout,
			v1alpha1.ReasonMaxDuration, v1alpha1.ReasonDetached, v1alpha1.ReasonTargetGone, v1alpha1.ReasonBridgeLost,
			v1alpha1.ReasonServerShutdown, v1alpha1.ReasonExecFailed} {
			SessionsClosed.WithLabelValues(reason)
		}
		for _, op := range []string{PublishOutput, PublishEvent, PublishTranscript, Follow} {
			JetStreamErrors.WithLabelValues(op)
		}
		for _, mode := range []string{ReadWrite, ReadOnly} {
			ViewersAttached.WithLabelValues(mode)
		}
		legacyregistry.RawMustRegister(metrics.NewGaugeFunc(&metrics.GaugeOpts{
			Namespace: namespace, Name: "nats_connected", StabilityLevel: metrics.ALPHA,
			Help: "1 while this replica is connected to NATS, else 0.",
		}, func() float64 {
			if natsConnected() {
				return 1
			}
			return 0
		}))
	})
}
