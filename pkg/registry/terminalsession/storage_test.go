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
	"reflect"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/storagebackend/factory"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/meshery/terminal-apiserver/pkg/apis/terminal"
)

// memoryStorage is just enough of storage.Interface for the generic store's Create, Get
// and Update, so these tests exercise the strategies the way the server calls them
// without a real backend. Methods it does not implement panic through the nil embedded
// interface, which flags a test that strays beyond what it was built for.
type memoryStorage struct {
	storage.Interface

	mu      sync.Mutex
	rv      uint64
	objects map[string]runtime.Object
}

var versioner = storage.APIObjectVersioner{}

func (m *memoryStorage) Versioner() storage.Versioner { return versioner }

func (m *memoryStorage) Create(ctx context.Context, key string, obj, out runtime.Object, ttl uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objects[key]; ok {
		return storage.NewKeyExistsError(key, 0)
	}
	return m.store(key, obj, out)
}

func (m *memoryStorage) Get(ctx context.Context, key string, opts storage.GetOptions, out runtime.Object) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	obj, ok := m.objects[key]
	if !ok {
		return storage.NewKeyNotFoundError(key, 0)
	}
	copyInto(out, obj)
	return nil
}

func (m *memoryStorage) GuaranteedUpdate(ctx context.Context, key string, destination runtime.Object, ignoreNotFound bool,
	preconditions *storage.Preconditions, tryUpdate storage.UpdateFunc, cachedExistingObject runtime.Object) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	existing, ok := m.objects[key]
	if !ok {
		if !ignoreNotFound {
			return storage.NewKeyNotFoundError(key, 0)
		}
		existing = reflect.New(reflect.TypeOf(destination).Elem()).Interface().(runtime.Object)
	}
	existing = existing.DeepCopyObject()
	if err := preconditions.Check(key, existing); err != nil {
		return err
	}
	rv, _ := versioner.ObjectResourceVersion(existing)
	updated, _, err := tryUpdate(existing, storage.ResponseMeta{ResourceVersion: rv})
	if err != nil {
		return err
	}
	return m.store(key, updated, destination)
}

func (m *memoryStorage) store(key string, obj, out runtime.Object) error {
	m.rv++
	obj = obj.DeepCopyObject()
	if err := versioner.UpdateObject(obj, m.rv); err != nil {
		return err
	}
	m.objects[key] = obj
	copyInto(out, obj)
	return nil
}

func copyInto(out, obj runtime.Object) {
	reflect.ValueOf(out).Elem().Set(reflect.ValueOf(obj.DeepCopyObject()).Elem())
}

// fakeRESTOptions plugs memoryStorage in where the server's storage decorator would.
func fakeRESTOptions() generic.RESTOptions {
	return generic.RESTOptions{
		StorageConfig: &storagebackend.ConfigForResource{GroupResource: terminal.Resource("terminalsessions")},
		Decorator: func(*storagebackend.ConfigForResource, string, func(runtime.Object) (string, error),
			func() runtime.Object, func() runtime.Object, storage.AttrFunc, storage.IndexerFuncs, *cache.Indexers,
		) (storage.Interface, factory.DestroyFunc, error) {
			return &memoryStorage{objects: map[string]runtime.Object{}}, func() {}, nil
		},
		ResourcePrefix: "terminal.meshery.io/terminalsessions",
	}
}

func newTestREST(t *testing.T) (*REST, *StatusREST) {
	t.Helper()
	r, status, err := NewREST(newScheme(), fakeRESTOptions(), nil, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Destroy)
	return r, status
}

func TestRESTMetadata(t *testing.T) {
	r, status := newTestREST(t)
	if got := r.ShortNames(); !reflect.DeepEqual(got, []string{"term"}) {
		t.Errorf("short names = %v, want [term]", got)
	}
	if got := r.GetSingularName(); got != "terminalsession" {
		t.Errorf("singular name = %q", got)
	}
	if !r.NamespaceScoped() {
		t.Error("REST is not namespaced")
	}
	// Sessions are interactive shells, not workloads: `kubectl get all` and
	// `kubectl delete all` must not sweep them up.
	if _, ok := interface{}(r).(rest.CategoriesProvider); ok {
		t.Error("sessions must not belong to any category")
	}
	if _, ok := status.New().(*terminal.TerminalSession); !ok {
		t.Errorf("status New() = %T", status.New())
	}
	if _, err := status.ConvertToTable(context.Background(), newSession(), nil); err != nil {
		t.Errorf("status subresource cannot render a table: %v", err)
	}
	if got := status.GetResetFields(); !reflect.DeepEqual(got, NewStatusStrategy(NewStrategy(newScheme())).GetResetFields()) {
		t.Errorf("status reset fields = %v, want the status strategy's", got)
	}
}

func createSession(t *testing.T, r *REST) *terminal.TerminalSession {
	t.Helper()
	s := newSession()
	s.Status = terminal.TerminalSessionStatus{Phase: terminal.TerminalSessionRunning, Owner: &terminal.SessionOwner{Username: "admin"}}
	obj, err := r.Create(userContext(jane), s, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return obj.(*terminal.TerminalSession)
}

func TestRESTCreate(t *testing.T) {
	r, _ := newTestREST(t)
	created := createSession(t, r)
	if created.Status.Owner == nil || created.Status.Owner.Username != "jane" || created.Status.Owner.UID != "u-42" {
		t.Errorf("owner = %+v, want jane from the request", created.Status.Owner)
	}
	if created.Status.Phase != terminal.TerminalSessionPending || created.Generation != 1 || created.UID == "" {
		t.Errorf("created session = %+v", created)
	}

	got, err := r.Get(userContext(jane), "debug", &metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.(*terminal.TerminalSession).Status.Owner.Username != "jane" {
		t.Error("stored session lost its owner")
	}

	bad := newSession()
	bad.Name = "bad"
	bad.Spec.Target.Pod = ""
	_, err = r.Create(userContext(jane), bad, rest.ValidateAllObjectFunc, &metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) || !hasCause(err, "spec.target.pod") {
		t.Errorf("create without a pod: err = %v, want Invalid on spec.target.pod", err)
	}
}

func TestRESTUpdate(t *testing.T) {
	r, _ := newTestREST(t)
	created := createSession(t, r)
	ctx := userContext(jane)

	labelled := created.DeepCopy()
	labelled.Labels = map[string]string{"team": "a"}
	labelled.Status.Phase = terminal.TerminalSessionClosed
	obj, _, err := r.Update(ctx, "debug", rest.DefaultUpdatedObjectInfo(labelled), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updated := obj.(*terminal.TerminalSession)
	if updated.Labels["team"] != "a" || updated.Status.Phase != terminal.TerminalSessionPending {
		t.Errorf("update: labels %v phase %q; want the label applied and the status untouched", updated.Labels, updated.Status.Phase)
	}

	retarget := updated.DeepCopy()
	retarget.Spec.Target.Pod = "elsewhere"
	_, _, err = r.Update(ctx, "debug", rest.DefaultUpdatedObjectInfo(retarget), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) || !hasCause(err, "spec") {
		t.Errorf("spec update: err = %v, want Invalid on spec", err)
	}

	missing := newSession()
	missing.Name = "missing"
	_, _, err = r.Update(ctx, "missing", rest.DefaultUpdatedObjectInfo(missing), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("PUT of a missing session: err = %v, want NotFound", err)
	}
}

// TestRESTApplyCreate covers server-side apply of a new session, which reaches the store
// as an update that may create: it must go through the create strategy all the same.
func TestRESTApplyCreate(t *testing.T) {
	r, _ := newTestREST(t)
	applied := newSession()
	applied.Status.Owner = &terminal.SessionOwner{Username: "admin"}
	obj, created, err := r.Update(userContext(jane), applied.Name, rest.DefaultUpdatedObjectInfo(applied), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, true, &metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*terminal.TerminalSession)
	if !created || s.Status.Owner.Username != "jane" || s.Status.Phase != terminal.TerminalSessionPending {
		t.Errorf("apply-create: created %v, status %+v; want a new session owned by jane", created, s.Status)
	}
}

func TestRESTStatusUpdate(t *testing.T) {
	r, status := newTestREST(t)
	created := createSession(t, r)
	ctx := userContext(jane)
	update := func(s *terminal.TerminalSession) (*terminal.TerminalSession, error) {
		obj, _, err := status.Update(ctx, s.Name, rest.DefaultUpdatedObjectInfo(s), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
		if err != nil {
			return nil, err
		}
		return obj.(*terminal.TerminalSession), nil
	}

	running := created.DeepCopy()
	running.Spec.Command = []string{"sh"}
	running.Status.Phase = terminal.TerminalSessionRunning
	running.Status.Subjects = "terminal." + string(created.UID)
	running.Status.Owner = &terminal.SessionOwner{Username: "mallory"}
	got, err := update(running)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != terminal.TerminalSessionRunning || got.Status.Subjects == "" {
		t.Errorf("status not written: %+v", got.Status)
	}
	if got.Spec.Command != nil || got.Status.Owner.Username != "jane" {
		t.Errorf("status update changed spec %v or owner %q", got.Spec.Command, got.Status.Owner.Username)
	}

	closed := got.DeepCopy()
	closed.Status.Phase = terminal.TerminalSessionClosed
	closed.Status.Reason = "Exited"
	closed.Status.ExitCode = ptr.To[int32](0)
	got, err = update(closed)
	if err != nil {
		t.Fatal(err)
	}

	reopened := got.DeepCopy()
	reopened.ResourceVersion = "" // unconditional, as a stale replica might send it
	reopened.Status.Phase = terminal.TerminalSessionRunning
	reopened.Status.ExitCode = nil
	if _, err := update(reopened); !apierrors.IsInvalid(err) || !hasCause(err, "status.phase") {
		t.Errorf("reopening a closed session: err = %v, want Invalid on status.phase", err)
	}
}

func hasCause(err error, fieldPath string) bool {
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Field == fieldPath {
			return true
		}
	}
	return false
}
