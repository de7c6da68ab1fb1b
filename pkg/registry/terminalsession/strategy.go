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

// Package terminalsession is the REST storage of TerminalSessions: the strategies that
// decide what clients may write, field selection, table output, and the generic
// registry stores for the main resource and its status subresource.
package terminalsession

import (
	"context"
	"fmt"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/v1alpha1"
	"github.com/meshery/terminal-apiserver/pkg/apis/terminal/validation"
	"github.com/meshery/terminal-apiserver/pkg/wire"
)

// Strategy is the create, update and delete logic for the main resource, where clients
// write the spec and the server owns the status.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	ceilings Ceilings
}

// Ceilings are the server's limits on what a spec may ask for (0: none).
type Ceilings struct {
	IdleTimeout, MaxDuration, DetachGracePeriod time.Duration
}

// validate refuses a spec above a ceiling: a 422 that names the ceiling and
// the flag that sets it. Refused rather than clamped: a user who asked for
// a week gets told at once, not surprised when the shell closes after a
// day (the bridge still applies the ceilings to sessions stored before a
// ceiling was lowered). 0 in the spec means "none", which a ceiling rules
// out; a field left out gets the server's default, within its ceiling.
func (c Ceilings) validate(spec *terminal.TerminalSessionSpec) field.ErrorList {
	var errs field.ErrorList
	check := func(name string, d *metav1.Duration, ceiling time.Duration, flag string) {
		if d == nil || ceiling <= 0 || (d.Duration > 0 && d.Duration <= ceiling) {
			return
		}
		what := d.Duration.String()
		if d.Duration == 0 {
			what = "0 (none)"
		}
		errs = append(errs, field.Invalid(field.NewPath("spec", name), d.Duration.String(),
			fmt.Sprintf("%s is above this server's ceiling of %s (terminal-apiserver %s)", what, ceiling, flag)))
	}
	check("idleTimeout", spec.IdleTimeout, c.IdleTimeout, "--idle-timeout-max")
	check("maxDuration", spec.MaxDuration, c.MaxDuration, "--max-duration-max")
	check("detachGracePeriod", spec.DetachGracePeriod, c.DetachGracePeriod, "--detach-grace-period-max")
	return errs
}

// NewStrategy returns the strategy for TerminalSessions, typing objects with typer.
func NewStrategy(typer runtime.ObjectTyper) Strategy {
	return Strategy{ObjectTyper: typer, NameGenerator: names.SimpleNameGenerator}
}

// NamespaceScoped is true: a session lives beside the pod it opens a shell in, so that
// namespace-scoped RBAC governs both together.
func (Strategy) NamespaceScoped() bool {
	return true
}

// GetResetFields tells server-side apply that clients cannot own status through the
// main resource, so an apply that includes status does not claim it.
func (Strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(v1alpha1.SchemeGroupVersion.String()): fieldpath.NewSet(
			fieldpath.MakePathOrDie("status"),
		),
	}
}

// PrepareForCreate discards any status the client sent and records who is asking: the
// owner comes from the authenticated request, never from the request body, because it
// decides whose identity the shell runs with and who may attach to it.
func (Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	session := obj.(*terminal.TerminalSession)
	session.Generation = 1
	session.Status = terminal.TerminalSessionStatus{
		Phase:    terminal.TerminalSessionPending,
		Owner:    ownerFromContext(ctx),
		Subjects: SubjectPrefix(session),
	}
}

// SubjectPrefix is the prefix of the NATS subjects that carry a session's streams. It is
// built from the UID, which the server generates (the store sets it before
// PrepareForCreate), and never from names or other strings a user chose: those could
// contain NATS wildcards or token separators, and a recreated session of the same name
// must not see the previous one's streams. Empty while the session has no UID.
func SubjectPrefix(session *terminal.TerminalSession) string {
	if session.UID == "" {
		return ""
	}
	return string(wire.SubjectsFor(string(session.UID)))
}

// ownerFromContext copies the requesting user, so that later changes to the request's
// user.Info (which the server does not own) cannot leak into the stored object.
func ownerFromContext(ctx context.Context) *terminal.SessionOwner {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok || u == nil {
		return nil
	}
	owner := &terminal.SessionOwner{
		Username: u.GetName(),
		UID:      u.GetUID(),
	}
	if groups := u.GetGroups(); len(groups) > 0 {
		owner.Groups = append([]string(nil), groups...)
	}
	if extra := u.GetExtra(); len(extra) > 0 {
		owner.Extra = make(map[string][]string, len(extra))
		for k, v := range extra {
			owner.Extra[k] = append([]string(nil), v...)
		}
	}
	return owner
}

// PrepareForUpdate keeps the stored status: only the status subresource may change it.
func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newSession := obj.(*terminal.TerminalSession)
	oldSession := old.(*terminal.TerminalSession)
	newSession.Status = oldSession.Status
	// Validation rejects spec changes, so this never fires today; it keeps generation
	// honest should a mutable spec field ever be added.
	if !apiequality.Semantic.DeepEqual(newSession.Spec, oldSession.Spec) {
		newSession.Generation = oldSession.Generation + 1
	}
}

// Validate validates a new session, against the server's ceilings too.
func (s Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	session := obj.(*terminal.TerminalSession)
	errs := validation.ValidateTerminalSession(session)
	return append(errs, s.ceilings.validate(&session.Spec)...)
}

// WarningsOnCreate returns no warnings: nothing in a valid spec is deprecated or risky.
func (Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	return nil
}

// Canonicalize does nothing: sessions have no equivalent spellings to normalize.
func (Strategy) Canonicalize(obj runtime.Object) {
}

// AllowCreateOnUpdate is false: a PUT that creates a session would bypass the checks that
// the server runs only when a session is created.
func (Strategy) AllowCreateOnUpdate(ctx context.Context) bool {
	return false
}

// AllowUnconditionalUpdate is true, as for pods: the spec is immutable, so an update
// without a resourceVersion can only touch metadata such as labels.
func (Strategy) AllowUnconditionalUpdate(ctx context.Context) bool {
	return true
}

// ValidateUpdate validates an update of the main resource.
func (Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateTerminalSessionUpdate(obj.(*terminal.TerminalSession), old.(*terminal.TerminalSession))
}

// WarningsOnUpdate returns no warnings.
func (Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// StatusStrategy is the update logic of the status subresource, which the server uses
// to report on a session and through which nothing but the status may change.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the status subresource's strategy built on strategy.
func NewStatusStrategy(strategy Strategy) StatusStrategy {
	return StatusStrategy{strategy}
}

// GetResetFields tells server-side apply which fields PrepareForUpdate throws away on
// the status subresource, so that an apply there does not claim them.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(v1alpha1.SchemeGroupVersion.String()): fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"),
			fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations"),
			fieldpath.MakePathOrDie("metadata", "finalizers"),
			fieldpath.MakePathOrDie("metadata", "ownerReferences"),
			fieldpath.MakePathOrDie("metadata", "deletionTimestamp"),
			fieldpath.MakePathOrDie("status", "owner"),
			fieldpath.MakePathOrDie("status", "subjects"),
		),
	}
}

// PrepareForUpdate keeps everything but the status from the stored object, and the
// owner from the stored status: it was fixed at creation from the authenticated request,
// and whoever writes status (the server's bridge) must not be able to re-attribute a
// session.
func (StatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newSession := obj.(*terminal.TerminalSession)
	oldSession := old.(*terminal.TerminalSession)
	newSession.Spec = oldSession.Spec
	metav1.ResetObjectMetaForStatus(&newSession.ObjectMeta, &oldSession.ObjectMeta)
	newSession.Status.Owner = oldSession.Status.Owner
	// Viewers read the session's streams below status.subjects: a status writer that
	// could point it elsewhere could splice another session's streams into this one.
	if oldSession.Status.Subjects != "" {
		newSession.Status.Subjects = oldSession.Status.Subjects
	}
}

// ValidateUpdate validates a status update.
func (StatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return validation.ValidateTerminalSessionStatusUpdate(obj.(*terminal.TerminalSession), old.(*terminal.TerminalSession))
}

// WarningsOnUpdate returns no warnings.
func (StatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and selectable fields of a TerminalSession, for label and
// field selectors in list and watch.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	session, ok := obj.(*terminal.TerminalSession)
	if !ok {
		return nil, nil, fmt.Errorf("not a TerminalSession: %T", obj)
	}
	return labels.Set(session.Labels), SelectableFields(session), nil
}

// MatchTerminalSession returns the predicate that list and watch use to filter sessions
// by label and field selectors.
func MatchTerminalSession(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{
		Label:    label,
		Field:    field,
		GetAttrs: GetAttrs,
	}
}

// SelectableFields returns the fields that field selectors can match on. The keys must
// be the labels that v1alpha1's field label conversion accepts, or the API server
// rejects the selector before it gets here.
func SelectableFields(session *terminal.TerminalSession) fields.Set {
	owner := ""
	if session.Status.Owner != nil {
		owner = session.Status.Owner.Username
	}
	set := fields.Set{
		"spec.target.pod":       session.Spec.Target.Pod,
		"spec.target.container": session.Spec.Target.Container,
		"status.phase":          string(session.Status.Phase),
		"status.owner.username": owner,
	}
	return generic.AddObjectMetaFieldsSet(set, &session.ObjectMeta, true)
}
