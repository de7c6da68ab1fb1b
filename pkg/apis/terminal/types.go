/*
Copyright The Meshery Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package terminal

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSession is an interactive shell in one container of a running pod.
// Creating it asks the server to run a command in the container (as `kubectl exec`
// would, with the creator's identity and permissions); viewers then connect to its
// `attach` subresource. The session closes when the process exits, when it is deleted,
// or when one of its timeouts expires; status says which.
type TerminalSession struct {
	metav1.TypeMeta
	// Standard object's metadata.
	// More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata
	// +optional
	metav1.ObjectMeta

	// spec describes the container to open a shell in and how the session behaves.
	// It is immutable once the session is created.
	Spec TerminalSessionSpec

	// status is the observed state of the session. It is written by the server only.
	// +optional
	Status TerminalSessionStatus
}

// TerminalSessionSpec describes a terminal session. Every field is immutable.
type TerminalSessionSpec struct {
	// target names the container the session runs its command in.
	Target TerminalTarget

	// command is the argv of the process to run in the container, for example
	// ["/bin/bash", "-l"]. It is not run through a shell. At most 256 entries, none empty.
	// When omitted, the server runs the first of `bash` and `sh` that the container has.
	// +optional
	// +listType=atomic
	Command []string

	// tty allocates a pseudo-terminal for the process, as `kubectl exec -t` does, so
	// that line editing, colours and full-screen programs work and stderr is merged into
	// stdout. Defaults to true.
	// +optional
	TTY *bool

	// size is the initial terminal size, applied before the process writes its first
	// byte. Viewers can resize the terminal later through the attach subresource.
	// Ignored when tty is false. Defaults to 80 columns by 24 rows.
	// +optional
	Size *TerminalSize

	// idleTimeout closes the session after this long without input from any viewer
	// or output from the process, for example "15m". Must be greater than zero.
	// When omitted, the server's default applies. The server's configured maximum,
	// if any, also applies.
	// +optional
	IdleTimeout *metav1.Duration

	// maxDuration closes the session this long after the process started, whatever
	// its activity, for example "8h". Must be greater than zero. When omitted, the
	// server's default applies. The server's configured maximum, if any, also applies.
	// +optional
	MaxDuration *metav1.Duration

	// detachGracePeriod closes the session once it has had no attached viewer for this
	// long, for example "5m", so that a closed browser tab does not leave a shell
	// running. Viewers that reattach within the period find the session, and its
	// scrollback, intact. Must be greater than zero. When omitted, the server's
	// default applies. The server's configured maximum, if any, also applies.
	// +optional
	DetachGracePeriod *metav1.Duration

	// ttlAfterClosed deletes the session object this long after it closed (status.closedAt),
	// for example "1h". "0s" deletes it as soon as it closes. Must not be negative.
	// When omitted, the server's default applies.
	// +optional
	TTLAfterClosed *metav1.Duration
}

// TerminalTarget names a container in a pod in the session's namespace.
type TerminalTarget struct {
	// pod is the name of the pod, in the session's namespace, to run the command in.
	// The pod must be running. The creator needs permission to create pods/exec on it.
	// Required.
	Pod string

	// container is the name of the container in the pod. When omitted, the server uses
	// the container named by the pod's kubectl.kubernetes.io/default-container
	// annotation or, failing that, the pod's only container; a pod with several
	// containers and no such annotation must name one here.
	// +optional
	Container string
}

// TerminalSize is the size of a terminal in character cells.
type TerminalSize struct {
	// cols is the width of the terminal, in columns (characters). Between 1 and 10000;
	// defaults to 80.
	// +optional
	Cols int32

	// rows is the height of the terminal, in rows (lines). Between 1 and 10000;
	// defaults to 24.
	// +optional
	Rows int32
}

// TerminalSessionPhase is a coarse summary of where a session is in its life.
// +enum
type TerminalSessionPhase string

const (
	// TerminalSessionPending means the session was accepted but its process has not started yet.
	TerminalSessionPending TerminalSessionPhase = "Pending"
	// TerminalSessionRunning means the process is running and viewers can attach.
	TerminalSessionRunning TerminalSessionPhase = "Running"
	// TerminalSessionClosed means the session ended normally: the process exited, or the
	// session was deleted or timed out. status.reason says which.
	TerminalSessionClosed TerminalSessionPhase = "Closed"
	// TerminalSessionFailed means the session could not start, or ended because of an error
	// such as the target pod disappearing. status.reason and status.message say why.
	TerminalSessionFailed TerminalSessionPhase = "Failed"
)

// Values of status.reason once a session is Closed or Failed. Clients should accept reasons
// not listed here: new ones may be added.
const (
	// ReasonExited means the process exited by itself; status.exitCode holds its exit code.
	ReasonExited = "Exited"
	// ReasonDeleted means the session was deleted while it was running.
	ReasonDeleted = "Deleted"
	// ReasonIdleTimeout means spec.idleTimeout passed without activity.
	ReasonIdleTimeout = "IdleTimeout"
	// ReasonMaxDuration means spec.maxDuration passed.
	ReasonMaxDuration = "MaxDuration"
	// ReasonDetached means no viewer was attached for spec.detachGracePeriod.
	ReasonDetached = "Detached"
	// ReasonTargetGone means the target pod or container stopped or was deleted.
	ReasonTargetGone = "TargetGone"
	// ReasonBridgeLost means the server lost the connection that carried the process's streams.
	ReasonBridgeLost = "BridgeLost"
	// ReasonExecFailed means the exec could not be opened or broke while the pod still runs
	// (phase Failed); the message says why.
	ReasonExecFailed = "ExecFailed"
)

// TerminalSessionStatus is the observed state of a terminal session.
type TerminalSessionStatus struct {
	// phase is a coarse summary of the session's life: Pending (accepted, process not
	// started yet), Running (viewers can attach), Closed (ended normally) or Failed
	// (could not start, or ended because of an error). Closed and Failed are final.
	// +optional
	Phase TerminalSessionPhase

	// conditions are the latest observations of the session's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition

	// owner is the user who created the session, as authenticated by the cluster. The
	// server sets it at creation and never changes it. The process runs with this user's
	// identity, and the owner is the only user who may attach without an explicit grant.
	// +optional
	Owner *SessionOwner

	// subjects is the prefix of the NATS subjects that carry the session's streams,
	// derived from the session's UID. Clients that read NATS directly subscribe below it.
	// +optional
	Subjects string

	// startedAt is when the process started in the container.
	// +optional
	StartedAt *metav1.Time

	// lastActivityTime is when a viewer last sent input or the process last produced
	// output. The server updates it at most every few seconds, so it may lag by that
	// much.
	// +optional
	LastActivityTime *metav1.Time

	// closedAt is when the session became Closed or Failed; spec.ttlAfterClosed counts
	// from here.
	// +optional
	ClosedAt *metav1.Time

	// exitCode is the exit status of the process, when it exited by itself and the
	// status is known. Set only in the Closed and Failed phases.
	// +optional
	ExitCode *int32

	// reason is a brief CamelCase word saying why the session is in its current phase,
	// for example Exited, Deleted, IdleTimeout, MaxDuration, Detached, TargetGone or
	// BridgeLost.
	// +optional
	Reason string

	// message is a human-readable explanation of the current phase.
	// +optional
	Message string

	// viewers is the number of clients currently attached. The server updates it at most
	// every few seconds.
	// +optional
	Viewers int32

	// observedGeneration is the metadata.generation that this status describes.
	// +optional
	ObservedGeneration int64
}

// SessionOwner is the identity of the user who created a session, as the cluster's
// authenticator reported it.
type SessionOwner struct {
	// username is the name of the user, for example "jane@example.com" or
	// "system:serviceaccount:dev:ci".
	Username string

	// uid is the user's unique identifier, when the authenticator provides one.
	// +optional
	UID string

	// groups are the groups the user belonged to when the session was created.
	// +optional
	// +listType=atomic
	Groups []string

	// extra holds additional information the authenticator provided about the user,
	// such as the service account token's pod or credential ID.
	// +optional
	Extra map[string][]string
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSessionList is a list of TerminalSession objects.
type TerminalSessionList struct {
	metav1.TypeMeta
	// Standard list metadata.
	// More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata
	// +optional
	metav1.ListMeta

	// items is the list of terminal sessions.
	Items []TerminalSession
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSessionAttachOptions is the query of the attach subresource: which
// streams the viewer opens, and where a reconnecting viewer resumes.
type TerminalSessionAttachOptions struct {
	metav1.TypeMeta

	// Stdin sends the viewer's input to the process; it takes the right to type.
	Stdin bool
	// Stdout sends the session's output to the viewer.
	Stdout bool
	// Stderr sends standard error, unless TTY merges it into Stdout.
	Stderr bool
	// TTY says the viewer is a terminal that may resize.
	TTY bool
	// Since is the number of output bytes the viewer already has.
	Since int64
	// UID, if set, is the UID of the session the viewer means.
	UID string
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSessionTranscriptOptions is the query of the transcript subresource.
type TerminalSessionTranscriptOptions struct {
	metav1.TypeMeta

	// Follow keeps streaming while the session records, until it closes.
	Follow bool
	// UID names the session by UID: a deleted session's transcript, or one
	// of an earlier session of the same name.
	UID string
}
