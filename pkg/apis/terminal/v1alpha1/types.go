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

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSession is an interactive shell in one container of a running pod.
// Creating it asks the server to run a command in the container (as `kubectl exec`
// would, with the creator's identity and permissions); viewers then connect to its
// `attach` subresource. The session closes when the process exits, when it is deleted,
// or when one of its timeouts expires; status says which.
type TerminalSession struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object's metadata.
	// More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec describes the container to open a shell in and how the session behaves.
	// It is immutable once the session is created.
	Spec TerminalSessionSpec `json:"spec"`

	// status is the observed state of the session. It is written by the server only.
	// +optional
	Status TerminalSessionStatus `json:"status,omitempty"`
}

// TerminalSessionSpec describes a terminal session. Every field is immutable.
type TerminalSessionSpec struct {
	// target names the container the session runs its command in.
	Target TerminalTarget `json:"target"`

	// command is the argv of the process to run in the container, for example
	// ["/bin/bash", "-l"]. It is not run through a shell. At most 256 entries, none empty.
	// When omitted, the server runs the first of `bash` and `sh` that the container has.
	// +optional
	// +listType=atomic
	Command []string `json:"command,omitempty"`

	// tty allocates a pseudo-terminal for the process, as `kubectl exec -t` does, so
	// that line editing, colours and full-screen programs work and stderr is merged into
	// stdout. Defaults to true.
	// +optional
	TTY *bool `json:"tty,omitempty"`

	// size is the initial terminal size, applied before the process writes its first
	// byte. Viewers can resize the terminal later through the attach subresource.
	// Ignored when tty is false. Defaults to 80 columns by 24 rows.
	// +optional
	Size *TerminalSize `json:"size,omitempty"`

	// idleTimeout closes the session after this long without input from any viewer
	// or output from the process, for example "15m". Must be greater than zero.
	// When omitted, the server's default applies. The server's configured maximum,
	// if any, also applies.
	// +optional
	IdleTimeout *metav1.Duration `json:"idleTimeout,omitempty"`

	// maxDuration closes the session this long after the process started, whatever
	// its activity, for example "8h". Must be greater than zero. When omitted, the
	// server's default applies. The server's configured maximum, if any, also applies.
	// +optional
	MaxDuration *metav1.Duration `json:"maxDuration,omitempty"`

	// detachGracePeriod closes the session once it has had no attached viewer for this
	// long, for example "5m", so that a closed browser tab does not leave a shell
	// running. Viewers that reattach within the period find the session, and its
	// scrollback, intact. Must be greater than zero. When omitted, the server's
	// default applies. The server's configured maximum, if any, also applies.
	// +optional
	DetachGracePeriod *metav1.Duration `json:"detachGracePeriod,omitempty"`

	// ttlAfterClosed deletes the session object this long after it closed (status.closedAt),
	// for example "1h". "0s" deletes it as soon as it closes. Must not be negative.
	// When omitted, the server's default applies.
	// +optional
	TTLAfterClosed *metav1.Duration `json:"ttlAfterClosed,omitempty"`
}

// TerminalTarget names a container in a pod in the session's namespace.
type TerminalTarget struct {
	// pod is the name of the pod, in the session's namespace, to run the command in.
	// The pod must be running. The creator needs permission to create pods/exec on it.
	// Required.
	Pod string `json:"pod"`

	// container is the name of the container in the pod. When omitted, the server uses
	// the container named by the pod's kubectl.kubernetes.io/default-container
	// annotation or, failing that, the pod's only container; a pod with several
	// containers and no such annotation must name one here.
	// +optional
	Container string `json:"container,omitempty"`
}

// TerminalSize is the size of a terminal in character cells.
type TerminalSize struct {
	// cols is the width of the terminal, in columns (characters). Between 1 and 10000;
	// defaults to 80.
	// +optional
	Cols int32 `json:"cols,omitempty"`

	// rows is the height of the terminal, in rows (lines). Between 1 and 10000;
	// defaults to 24.
	// +optional
	Rows int32 `json:"rows,omitempty"`
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
	// ReasonServerShutdown means the server replica running the session shut down (an upgrade,
	// a node drain) and the session was still running at the end of its drain period
	// (terminal-apiserver's --shutdown-drain-timeout). Viewers were told when the drain began.
	ReasonServerShutdown = "ServerShutdown"
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
	Phase TerminalSessionPhase `json:"phase,omitempty"`

	// conditions are the latest observations of the session's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +patchMergeKey=type
	// +patchStrategy=merge
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// owner is the user who created the session, as authenticated by the cluster. The
	// server sets it at creation and never changes it. The process runs with this user's
	// identity, and the owner is the only user who may attach without an explicit grant.
	// +optional
	Owner *SessionOwner `json:"owner,omitempty"`

	// subjects is the prefix of the NATS subjects that carry the session's streams,
	// derived from the session's UID. Clients that read NATS directly subscribe below it.
	// +optional
	Subjects string `json:"subjects,omitempty"`

	// startedAt is when the process started in the container.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`

	// lastActivityTime is when a viewer last sent input or the process last produced
	// output. The server updates it at most every few seconds, so it may lag by that
	// much.
	// +optional
	LastActivityTime *metav1.Time `json:"lastActivityTime,omitempty"`

	// closedAt is when the session became Closed or Failed; spec.ttlAfterClosed counts
	// from here.
	// +optional
	ClosedAt *metav1.Time `json:"closedAt,omitempty"`

	// exitCode is the exit status of the process, when it exited by itself and the
	// status is known. Set only in the Closed and Failed phases.
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`

	// reason is a brief CamelCase word saying why the session is in its current phase,
	// for example Exited, Deleted, IdleTimeout, MaxDuration, Detached, TargetGone or
	// BridgeLost.
	// +optional
	Reason string `json:"reason,omitempty"`

	// message is a human-readable explanation of the current phase.
	// +optional
	Message string `json:"message,omitempty"`

	// viewers is the number of clients currently attached. The server updates it at most
	// every few seconds.
	// +optional
	Viewers int32 `json:"viewers,omitempty"`

	// observedGeneration is the metadata.generation that this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// SessionOwner is the identity of the user who created a session, as the cluster's
// authenticator reported it.
type SessionOwner struct {
	// username is the name of the user, for example "jane@example.com" or
	// "system:serviceaccount:dev:ci".
	Username string `json:"username"`

	// uid is the user's unique identifier, when the authenticator provides one.
	// +optional
	UID string `json:"uid,omitempty"`

	// groups are the groups the user belonged to when the session was created. The
	// server impersonates them for the session's exec and never returns them to a
	// client: readers see username and uid only.
	// +optional
	// +listType=atomic
	Groups []string `json:"groups,omitempty"`

	// extra holds additional information the authenticator provided about the user,
	// such as the service account token's pod or credential ID. Like groups, it is
	// impersonated and never returned to a client.
	// +optional
	Extra map[string][]string `json:"extra,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSessionList is a list of TerminalSession objects.
type TerminalSessionList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// items is the list of terminal sessions.
	Items []TerminalSession `json:"items"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSessionAttachOptions is the query of the attach subresource, as
// PodAttachOptions is of a pod's: which streams the viewer opens, and where a
// reconnecting viewer resumes.
type TerminalSessionAttachOptions struct {
	metav1.TypeMeta `json:",inline"`

	// stdin, if true, sends the viewer's input to the session's process. It takes
	// the right to type: the owner's, or a join grant's; an observer asking for
	// it is refused.
	// +optional
	Stdin bool `json:"stdin,omitempty"`

	// stdout, if true, sends the session's output to the viewer.
	// +optional
	Stdout bool `json:"stdout,omitempty"`

	// stderr, if true, sends the process's standard error to the viewer. Under a
	// terminal it is merged into stdout, and this is ignored.
	// +optional
	Stderr bool `json:"stderr,omitempty"`

	// tty, if true, says the viewer is a terminal: it may send resize events.
	// +optional
	TTY bool `json:"tty,omitempty"`

	// since is the number of output bytes the viewer already has: a reconnecting
	// viewer gets what followed, nothing twice. 0 (the default) replays the
	// scrollback the server keeps.
	// +optional
	Since int64 `json:"since,omitempty"`

	// uid, if set, is the UID of the session the viewer means: a session of the
	// same name created since is refused (409), not joined by mistake.
	// +optional
	UID string `json:"uid,omitempty"`
}

// +k8s:conversion-gen:explicit-from=net/url.Values
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TerminalSessionTranscriptOptions is the query of the transcript subresource,
// as PodLogOptions is of a pod's log.
type TerminalSessionTranscriptOptions struct {
	metav1.TypeMeta `json:",inline"`

	// follow, if true, keeps streaming the transcript while the session records
	// it, and ends when the session closes.
	// +optional
	Follow bool `json:"follow,omitempty"`

	// uid, if set, names the session by UID: the transcript of a session that was
	// deleted (kept for the server's transcript retention), or of an earlier
	// session of the same name. Reading it takes the replay grant.
	// +optional
	UID string `json:"uid,omitempty"`
}
