package kvstore

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/example"
	"k8s.io/apiserver/pkg/storage"
)

// Storage costs on the embedded NATS server (make bench prints them).

func BenchmarkCreate(b *testing.B) {
	ctx, s := newTestStore(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "ns"}}
		if err := s.Create(ctx, "/pods/ns/"+pod.Name, pod, &example.Pod{}, 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGuaranteedUpdate(b *testing.B) {
	ctx, s := newTestStore(b)
	pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}
	if err := s.Create(ctx, "/pods/ns/p", pod, &example.Pod{}, 0); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		relabel(ctx, b, s, i)
	}
}

// BenchmarkConsistentList1000 lists 1000 objects with a consistent read.
func BenchmarkConsistentList1000(b *testing.B) {
	ctx, s := newTestStore(b)
	for i := range 1000 {
		pod := &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%04d", i), Namespace: "ns"}}
		if err := s.Create(ctx, "/pods/ns/"+pod.Name, pod, &example.Pod{}, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		list := &example.PodList{}
		if err := s.GetList(ctx, "/pods/", storage.ListOptions{Recursive: true, Predicate: storage.Everything}, list); err != nil {
			b.Fatal(err)
		}
		if len(list.Items) != 1000 {
			b.Fatalf("listed %d", len(list.Items))
		}
	}
}

// BenchmarkWriteToWatchEvent is the latency from an update's start to its
// event reaching a watcher.
func BenchmarkWriteToWatchEvent(b *testing.B) {
	ctx, s := newTestStore(b)
	out := &example.Pod{}
	if err := s.Create(ctx, "/pods/ns/p", &example.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}}, out, 0); err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.Watch(wctx, "/pods/ns/p", storage.ListOptions{ResourceVersion: out.ResourceVersion, Predicate: storage.Everything})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		relabel(ctx, b, s, i)
		<-w.ResultChan()
	}
}

// relabel is one real update of the benchmark's pod.
func relabel(ctx context.Context, b *testing.B, s *testStore, i int) {
	err := s.GuaranteedUpdate(ctx, "/pods/ns/p", &example.Pod{}, false, nil,
		storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
			obj.(*example.Pod).Labels = map[string]string{"n": fmt.Sprint(i)}
			return obj, nil
		}), nil)
	if err != nil {
		b.Fatal(err)
	}
}
