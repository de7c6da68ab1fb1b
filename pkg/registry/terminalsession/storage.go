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

package terminalsession

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// Limits are what the server allows one session and one user.
type Limits struct {
	// MaxSessionsPerUser (0: no limit) caps the open (Pending or Running)
	// sessions one user may have across all namespaces: each holds a
	// process and a stream. The check is not atomic with the create, so
	// concurrent creates may overshoot it by a few.
	MaxSessionsPerUser int
	// Ceilings cap the timeouts a spec may ask for.
	Ceilings Ceilings
}

// REST is the storage of the terminalsessions resource.
type REST struct {
	*genericregistry.Store
}

var (
	_ rest.StandardStorage      = &REST{}
	_ rest.ShortNamesProvider   = &REST{}
	_ rest.SingularNameProvider = &REST{}
	_ rest.ResetFieldsStrategy  = &REST{}
	_ rest.Patcher              = &StatusREST{}
	_ rest.ResetFieldsStrategy  = &StatusREST{}
	_ rest.TableConvertor       = &StatusREST{}
)

// NewREST returns the storage of the terminalsessions resource and of its status
// subresource. Both share one underlying store; they differ only in which fields an
// update may change. scheme must have the terminal group installed. targets checks
// every new session before it is stored (see checkTarget); nil skips the checks, which
// only tests that do not exercise them may do.
//
// limits are the server's: see Limits.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, targets TargetChecker, limits Limits) (*REST, *StatusREST, error) {
	strategy := NewStrategy(scheme)
	strategy.ceilings = limits.Ceilings
	maxPerUser := limits.MaxSessionsPerUser
	statusStrategy := NewStatusStrategy(strategy)

	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &terminal.TerminalSession{} },
		NewListFunc:               func() runtime.Object { return &terminal.TerminalSessionList{} },
		PredicateFunc:             MatchTerminalSession,
		DefaultQualifiedResource:  terminal.Resource("terminalsessions"),
		SingularQualifiedResource: terminal.Resource("terminalsession"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,
		// The deleted object carries the session's last status (reason, exit code), which
		// is what a client closing a session by deleting it wants to see.
		ReturnDeletedObject: true,

		TableConvertor: NewTableConvertor(),
	}
	if targets != nil {
		// BeginCreate, not a Create override: server-side apply creates through Update
		// (forceAllowCreate), and the store calls this hook on both paths, dry runs
		// included, after the object's UID and generated name are set and before it is
		// stored. What it changes in the object (the resolved container) is stored.
		store.BeginCreate = func(ctx context.Context, obj runtime.Object, _ *metav1.CreateOptions) (genericregistry.FinishFunc, error) {
			if err := checkTarget(ctx, targets, strategy, obj); err != nil {
				return nil, err
			}
			if err := checkUserLimit(ctx, store, maxPerUser); err != nil {
				return nil, err
			}
			return func(context.Context, bool) {}, nil
		}
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, nil, err
	}

	statusStore := *store
	statusStore.UpdateStrategy = statusStrategy
	statusStore.ResetFieldsStrategy = statusStrategy

	return &REST{store}, &StatusREST{store: &statusStore}, nil
}

// checkUserLimit refuses a new session when its creator already has maxPerUser
// open ones: 429, like any other quota. Without Retry-After: client-go and
// kubectl would silently retry for minutes, while only closing a session helps.
func checkUserLimit(ctx context.Context, store *genericregistry.Store, maxPerUser int) error {
	u, ok := genericapirequest.UserFrom(ctx)
	if maxPerUser <= 0 || !ok {
		return nil
	}
	all := genericapirequest.WithNamespace(ctx, metav1.NamespaceAll)
	list, err := store.List(all, &metainternalversion.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("status.owner.username", u.GetName()),
	})
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("counting %s's open sessions: %w", u.GetName(), err))
	}
	open := 0
	for _, s := range list.(*terminal.TerminalSessionList).Items {
		if s.Status.Phase == terminal.TerminalSessionPending || s.Status.Phase == terminal.TerminalSessionRunning {
			open++
		}
	}
	if open >= maxPerUser {
		return apierrors.NewTooManyRequests(fmt.Sprintf("user %q already has %d open terminal sessions, the most one user may have "+
			"(terminal-apiserver --max-sessions-per-user); close one first", u.GetName(), open), 0)
	}
	return nil
}

// checkTarget runs targets' checks on a session about to be created and writes the
// resolved container into its spec, which is immutable from then on: the bridge and
// `kubectl get term` see the container the session really runs in.
func checkTarget(ctx context.Context, targets TargetChecker, strategy Strategy, obj runtime.Object) error {
	session, ok := obj.(*terminal.TerminalSession)
	if !ok {
		return apierrors.NewInternalError(fmt.Errorf("creating a terminal session: got %T", obj))
	}
	// The store validates after this hook. Validate first here too, so that a bad spec
	// gets its 422 with every field error rather than a 403 or a pod lookup for a name
	// that validation would refuse. Returning the error (rather than skipping the checks
	// and leaving it to the store) means no object can reach storage unchecked.
	if errs := strategy.Validate(ctx, session); len(errs) > 0 {
		return apierrors.NewInvalid(terminal.Kind("TerminalSession"), session.Name, errs)
	}
	// The store keys the object by the request's namespace; check the same one.
	checked := session
	if ns, ok := genericapirequest.NamespaceFrom(ctx); ok && ns != "" && ns != session.Namespace {
		checked = session.DeepCopy()
		checked.Namespace = ns
	}
	u, _ := genericapirequest.UserFrom(ctx)
	container, err := targets.Check(ctx, u, checked)
	if err != nil {
		return err
	}
	session.Spec.Target.Container = container
	return nil
}

// ShortNames lets `kubectl get term` find the resource.
func (r *REST) ShortNames() []string {
	return []string{"term"}
}

// StatusREST is the storage of the terminalsessions/status subresource.
type StatusREST struct {
	store *genericregistry.Store
}

// New returns an empty TerminalSession.
func (r *StatusREST) New() runtime.Object {
	return &terminal.TerminalSession{}
}

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *StatusREST) Destroy() {
}

// Get returns the session; PATCH on the subresource needs it.
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.store.Get(ctx, name, options)
	return redact(ctx, obj), err
}

// Update changes the status of a session and nothing else.
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	// A subresource never creates its parent, whatever the caller asks.
	out, created, err := r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
	return redact(ctx, out), created, err
}

// GetResetFields returns the fields that a status update resets, for server-side apply.
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// ConvertToTable renders the session as the main resource does.
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}
