package terminalsession

import (
	"context"

	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// An owner's groups and extras are what the bridge impersonates, and they
// say more about a person than anyone who may read a session needs:
// group memberships, credential IDs, OIDC claims. Readers see the owner's
// username and UID; the groups and extras are kept in the stored object,
// which only the server itself reads whole (its loopback identity, through
// which every replica's bridge reads sessions). Updates cannot drop them:
// both strategies restore the stored owner.

// redact returns obj as the requesting user may see it.
func redact(ctx context.Context, obj runtime.Object) runtime.Object {
	if obj == nil || readsWhole(ctx) {
		return obj
	}
	switch o := obj.(type) {
	case *terminal.TerminalSession:
		if hasPrivateOwner(o) {
			o = o.DeepCopy()
			o.Status.Owner.Groups, o.Status.Owner.Extra = nil, nil
		}
		return o
	case *terminal.TerminalSessionList:
		for i := range o.Items {
			if hasPrivateOwner(&o.Items[i]) {
				o.Items[i].Status.Owner = o.Items[i].Status.Owner.DeepCopy()
				o.Items[i].Status.Owner.Groups, o.Items[i].Status.Owner.Extra = nil, nil
			}
		}
	}
	return obj
}

func hasPrivateOwner(s *terminal.TerminalSession) bool {
	o := s.Status.Owner
	return o != nil && (len(o.Groups) > 0 || len(o.Extra) > 0)
}

// readsWhole: the server's own loopback identity, and nobody else.
func readsWhole(ctx context.Context) bool {
	u, ok := genericapirequest.UserFrom(ctx)
	if !ok || u.GetName() != user.APIServerUser {
		return false
	}
	for _, g := range u.GetGroups() {
		if g == user.SystemPrivilegedGroup {
			return true
		}
	}
	return false
}

// Get implements rest.Getter.
func (r *REST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.Store.Get(ctx, name, options)
	return redact(ctx, obj), err
}

// List implements rest.Lister.
func (r *REST) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	obj, err := r.Store.List(ctx, options)
	return redact(ctx, obj), err
}

// Create implements rest.Creater.
func (r *REST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	out, err := r.Store.Create(ctx, obj, createValidation, options)
	return redact(ctx, out), err
}

// Update implements rest.Updater.
func (r *REST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	out, created, err := r.Store.Update(ctx, name, objInfo, createValidation, updateValidation, forceAllowCreate, options)
	return redact(ctx, out), created, err
}

// Delete implements rest.GracefulDeleter.
func (r *REST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	out, deleted, err := r.Store.Delete(ctx, name, deleteValidation, options)
	return redact(ctx, out), deleted, err
}

// DeleteCollection implements rest.CollectionDeleter.
func (r *REST) DeleteCollection(ctx context.Context, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions,
	listOptions *metainternalversion.ListOptions) (runtime.Object, error) {
	out, err := r.Store.DeleteCollection(ctx, deleteValidation, options, listOptions)
	return redact(ctx, out), err
}

// Watch implements rest.Watcher.
func (r *REST) Watch(ctx context.Context, options *metainternalversion.ListOptions) (watch.Interface, error) {
	w, err := r.Store.Watch(ctx, options)
	if err != nil || readsWhole(ctx) {
		return w, err
	}
	return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
		ev.Object = redact(ctx, ev.Object)
		return ev, true
	}), nil
}
