// Package wire is the NATS contract between the two sides of a terminal:
// the exec side (pkg/bridge: the replica that runs a session's exec) and
// the attach side (pkg/attach: any replica that serves a viewer). Both
// build and parse subjects, names, headers and messages only through this
// package, so they cannot silently disagree; wire_test.go pins every name
// and shape, so changing the contract is a visible test change.
//
// Every subject of a session is keyed by its UID, never by a name or
// anything else a user wrote (those could hold NATS wildcards or token
// separators, and a session re-created under the same name must not see
// the old one's streams):
//
//	terminal.<uid>.out      output frames: raw bytes (stdout, and stderr under a TTY), at most MaxFrame
//	                        each, headers SeqHeader and OffsetHeader; in the IOStream (scrollback)
//	terminal.<uid>.ctl      lifecycle Events (started, closed) as JSON; in the IOStream
//	terminal.<uid>.in       input bytes, in order (core NATS)
//	terminal.<uid>.resize   a Size as JSON (core NATS)
//	terminal.<uid>.viewers  viewer Presence as JSON (core NATS): id, state, user, mode
//	terminal.<uid>.cast     the transcript: asciicast v2 lines (pkg/transcript), in order, the header
//	                        first (headers NamespaceHeader, NameHeader), then an empty message with
//	                        EndHeader; in the TranscriptStream, kept after the session is deleted
//
// The exec side holds a session's lease in the LeaseBucket while it runs
// it. Session objects themselves live in the storage streams of
// pkg/kvstore, which is a contract of its own.
//
// Whoever can publish to these subjects can type into any shell, and
// whoever can read them reads every keystroke: NATS access is exec access.
//
// This package uses the standard library only.
package wire

import (
	"strings"
	"time"
)

// Root is the first token of every session subject.
const Root = "terminal"

// Kind is the last token of a session subject: what it carries.
type Kind string

const (
	KindOut     Kind = "out"
	KindCtl     Kind = "ctl"
	KindIn      Kind = "in"
	KindResize  Kind = "resize"
	KindViewers Kind = "viewers"
	KindCast    Kind = "cast"
)

// Subjects is a session's subject prefix, terminal.<uid>; the object's
// status.subjects holds it.
type Subjects string

// SubjectsFor is the subject prefix of the session with the given UID.
func SubjectsFor(uid string) Subjects { return Subjects(Root + "." + uid) }

func (s Subjects) subject(k Kind) string { return string(s) + "." + string(k) }

func (s Subjects) Out() string     { return s.subject(KindOut) }
func (s Subjects) Ctl() string     { return s.subject(KindCtl) }
func (s Subjects) In() string      { return s.subject(KindIn) }
func (s Subjects) Resize() string  { return s.subject(KindResize) }
func (s Subjects) Viewers() string { return s.subject(KindViewers) }
func (s Subjects) Cast() string    { return s.subject(KindCast) }

// All matches every subject of the session (to purge its scrollback).
func (s Subjects) All() string { return string(s) + ".*" }

// UID is the session UID the subjects are keyed by; "" if s is not a
// session's prefix.
func (s Subjects) UID() string {
	uid, ok := strings.CutPrefix(string(s), Root+".")
	if !ok || uid == "" || strings.ContainsAny(uid, ".*> ") {
		return ""
	}
	return uid
}

// Parse splits a session subject into its session's prefix and kind; false
// for any other subject.
func Parse(subject string) (Subjects, Kind, bool) {
	i := strings.LastIndexByte(subject, '.')
	if i < 0 {
		return "", "", false
	}
	s, k := Subjects(subject[:i]), Kind(subject[i+1:])
	if s.UID() == "" {
		return "", "", false
	}
	switch k {
	case KindOut, KindCtl, KindIn, KindResize, KindViewers:
		return s, k, true
	}
	return "", "", false
}

// Streams and buckets.
const (
	// IOStream keeps every session's recent output and lifecycle events:
	// the scrollback a late or reconnecting viewer replays.
	IOStream = "TERMINAL_IO"
	// LeaseBucket holds one key per running session (its UID), owned by
	// the replica that runs its exec and expiring unless renewed.
	LeaseBucket = "TERMINAL_BRIDGE_LEASES"
	// LeaseStream is the JetStream stream that holds the LeaseBucket.
	LeaseStream = "KV_" + LeaseBucket
	// TranscriptStream keeps every session's transcript for the
	// retention period, after the session is deleted too.
	TranscriptStream = "TERMINAL_TRANSCRIPTS"
)

// TranscriptSubjects are the subjects the TranscriptStream stores.
func TranscriptSubjects() []string {
	return []string{Root + ".*." + string(KindCast)}
}

// IOSubjects are the subjects the IOStream stores.
func IOSubjects() []string {
	return []string{Root + ".*." + string(KindOut), Root + ".*." + string(KindCtl)}
}

// How output frames are sent again (docs/wire.md): a publisher sends a
// frame again, with those after it, once its answer was lost with the
// connection or has not come within FrameAckWait; a reader holds the
// frames that start past what it has for up to FrameReorderWait, while a
// frame sent again may still come, before it takes the gap as lost.
const (
	FrameAckWait     = 5 * time.Second
	FrameReorderWait = 10 * time.Second
)

// Headers of output frames.
const (
	// SeqHeader numbers a session's output frames 1, 2, 3, ... A frame
	// whose answer the publisher's NATS connection lost is published again
	// with the frames after it, with the same numbers and offsets: the
	// stream may then hold copies, and a copy stored after frames that
	// follow it. Readers go by OffsetHeader.
	SeqHeader = "Terminal-Seq"
	// OffsetHeader is the byte offset of a frame's first byte in the
	// session's output: a reconnecting viewer resumes at the byte it
	// reached, with nothing lost or repeated, and frames stored out of
	// order or twice are put back in order by it.
	OffsetHeader = "Terminal-Offset"
)

// Headers of transcript messages.
const (
	// NamespaceHeader and NameHeader, on a transcript's first message,
	// say whose it is: the session's namespace and name, which outlive the
	// session (a deleted session's transcript is read by UID).
	NamespaceHeader = "Terminal-Namespace"
	NameHeader      = "Terminal-Name"
	// EndHeader marks a transcript's last message, empty, sent when the
	// session's process has ended.
	EndHeader = "Terminal-End"
)

// MaxFrame is the most output one frame carries.
const MaxFrame = 32 << 10

// Frame is a piece of a session's output from byte Offset on.
type Frame struct {
	Offset uint64
	Data   []byte
}

// EventType says what an Event on the control subject reports.
type EventType string

const (
	// EventStarted: the process runs; Command is what runs.
	EventStarted EventType = "started"
	// EventClosed: the session ended; Reason (one of the API's reasons:
	// Exited, Deleted, IdleTimeout, MaxDuration, Detached, TargetGone,
	// ExecFailed, BridgeLost, ServerShutdown), Message and, for Exited,
	// ExitCode say how.
	EventClosed EventType = "closed"
	// EventDraining: the replica running the session is shutting down;
	// the session ends by Deadline (RFC 3339) unless it ends first. Sent
	// once; the session's output carries the same notice for people.
	EventDraining EventType = "draining"
)

// Event is what the control subject carries.
type Event struct {
	Type     EventType `json:"type"`
	Command  []string  `json:"command,omitempty"`
	ExitCode *int32    `json:"exitCode,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Message  string    `json:"message,omitempty"`
	Deadline string    `json:"deadline,omitempty"`
}

// Size is what the resize subject carries.
type Size struct {
	Cols uint16 `json:"cols"`
	Rows uint16 `json:"rows"`
}

// PresenceState is a viewer's announcement.
type PresenceState string

const (
	Attached PresenceState = "attached"
	Detached PresenceState = "detached"
)

// Presence is what the viewers subject carries: a viewer announces itself
// Attached when it attaches and at least every ViewerRefresh while
// attached, and Detached when it leaves. One silent for ViewerTTL is gone.
type Presence struct {
	// ID identifies one viewer connection; the replica that serves it
	// generates it.
	ID    string        `json:"id"`
	State PresenceState `json:"state"`
	// User is who the viewer is, for status and events.
	User string `json:"user,omitempty"`
	// Mode is what the viewer may do: ModeReadWrite or ModeReadOnly.
	Mode string `json:"mode,omitempty"`
}

// Viewer modes.
const (
	ModeReadWrite = "read-write" // may type and resize
	ModeReadOnly  = "read-only"  // watches
)

const (
	ViewerRefresh = 10 * time.Second
	ViewerTTL     = 3 * ViewerRefresh
)
