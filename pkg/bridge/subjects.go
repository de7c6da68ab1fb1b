// Package bridge runs a TerminalSession's process: it claims the session (one
// replica owns each exec), opens pods/exec against kube-apiserver as the
// session's owner, and relays the terminal through the session's NATS
// subjects.
package bridge

// Subject names, keyed by the session's UID: never by user-supplied strings.
//
//	terminal.<uid>.out     output frames (stdout, and stderr under a TTY), in the TERMINAL_IO stream
//	terminal.<uid>.ctl     lifecycle events (started, exit), in the TERMINAL_IO stream
//	terminal.<uid>.in      input bytes (core NATS)
//	terminal.<uid>.resize  {"cols":N,"rows":N} (core NATS)
//	terminal.<uid>.viewers viewer presence, Presence JSON (core NATS)
type Subjects string

const subjectRoot = "terminal"

// SubjectsFor is the subject prefix of a session.
func SubjectsFor(uid string) Subjects { return Subjects(subjectRoot + "." + uid) }

func (s Subjects) Out() string     { return string(s) + ".out" }
func (s Subjects) Ctl() string     { return string(s) + ".ctl" }
func (s Subjects) In() string      { return string(s) + ".in" }
func (s Subjects) Resize() string  { return string(s) + ".resize" }
func (s Subjects) Viewers() string { return string(s) + ".viewers" }

const (
	// SeqHeader numbers a session's output frames 1, 2, 3, ... so a viewer
	// sees gaps and knows where to resume.
	SeqHeader = "Terminal-Seq"
	// OffsetHeader is the byte offset of a frame's first byte in the
	// session's output: a reconnecting viewer resumes at the byte it
	// reached, with nothing lost or repeated.
	OffsetHeader = "Terminal-Offset"
	// IOStream keeps recent output and control events of every session:
	// the scrollback a late or reconnecting viewer replays.
	IOStream = "TERMINAL_IO"
)
