package bridge

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
)

var podsResource = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// podWatch tells the bridge when a target pod is deleted. It watches pod
// metadata only, and only in namespaces where this replica runs sessions,
// so a session costs no polling and the server holds no pod specs.
//
// A pod that stops running while a process in it lives on is noticed when
// the exec ends (a real kubelet ends it with the container).
type podWatch struct {
	client metadata.Interface
	gone   func(namespace, pod, why string)

	mu   sync.Mutex
	byNS map[string]*nsPods
}

type nsPods struct {
	users int
	stop  context.CancelFunc
}

func newPodWatch(client metadata.Interface, gone func(namespace, pod, why string)) *podWatch {
	return &podWatch{client: client, gone: gone, byNS: map[string]*nsPods{}}
}

// watch starts watching namespace's pods (if no session there did yet)
// until release is called as often as watch was.
func (w *podWatch) watch(ctx context.Context, namespace string) (release func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ns := w.byNS[namespace]
	if ns == nil {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		ns = &nsPods{stop: cancel}
		w.byNS[namespace] = ns
		go w.run(ctx, namespace)
	}
	ns.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if ns.users--; ns.users == 0 {
				ns.stop()
				delete(w.byNS, namespace)
			}
		})
	}
}

func (w *podWatch) run(ctx context.Context, namespace string) {
	inf := metadatainformer.NewFilteredMetadataInformer(w.client, podsResource, namespace, 30*time.Minute,
		cache.Indexers{}, nil).Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) {
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok && m.DeletionTimestamp != nil {
				w.gone(m.Namespace, m.Name, fmt.Sprintf("pod %q is being deleted", m.Name))
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
				w.gone(m.Namespace, m.Name, fmt.Sprintf("pod %q was deleted", m.Name))
			}
		},
	})
	inf.RunWithContext(ctx)
}
