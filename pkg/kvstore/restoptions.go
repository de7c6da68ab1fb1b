package kvstore

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/storagebackend/factory"
	"k8s.io/client-go/tools/cache"
)

// RESTOptionsGetter gives the generic registry a NATS-backed store for each
// resource: the seam where etcd would otherwise be plugged in. Objects are
// not wrapped in the watch cache: the store already serves lists and
// watches from memory.
type RESTOptionsGetter struct {
	JetStream jetstream.JetStream
	// Codec encodes objects for storage (storage version JSON).
	Codec runtime.Codec
	// Prefix is the storage key prefix, e.g. "/registry".
	Prefix string
	// StreamPrefix names each resource's stream: <StreamPrefix>_<RESOURCE>.
	StreamPrefix string
	// SubjectPrefix roots each resource's subjects: <SubjectPrefix>.<resource>.>
	SubjectPrefix string
	Replicas      int
	History       int
	HistoryBytes  int
	// MaxObjectBytes bounds one stored object (0: DefaultMaxObjectBytes).
	MaxObjectBytes int
	// DeleteCollectionWorkers and EnableGarbageCollection as for etcd.
	DeleteCollectionWorkers int
	EnableGarbageCollection bool

	mu      sync.Mutex
	stores  []*Store
	streams []string
}

// Streams names the stream of every store this getter made.
func (g *RESTOptionsGetter) Streams() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.streams...)
}

// StopWatches ends the open watches of every store this getter made.
func (g *RESTOptionsGetter) StopWatches() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range g.stores {
		s.StopWatches()
	}
}

var streamNameUnsafe = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// GetRESTOptions implements generic.RESTOptionsGetter.
func (g *RESTOptionsGetter) GetRESTOptions(resource schema.GroupResource, _ runtime.Object) (generic.RESTOptions, error) {
	cfg := &storagebackend.ConfigForResource{
		Config:        storagebackend.Config{Prefix: g.Prefix, Codec: g.Codec},
		GroupResource: resource,
	}
	return generic.RESTOptions{
		StorageConfig:           cfg,
		Decorator:               g.decorator(resource),
		EnableGarbageCollection: g.EnableGarbageCollection,
		DeleteCollectionWorkers: g.DeleteCollectionWorkers,
		ResourcePrefix:          resource.Group + "/" + resource.Resource,
	}, nil
}

func (g *RESTOptionsGetter) decorator(resource schema.GroupResource) generic.StorageDecorator {
	return func(config *storagebackend.ConfigForResource, resourcePrefix string, _ func(obj runtime.Object) (string, error),
		newFunc, _ func() runtime.Object, _ storage.AttrFunc, _ storage.IndexerFuncs, _ *cache.Indexers,
	) (storage.Interface, factory.DestroyFunc, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		name := strings.ToUpper(streamNameUnsafe.ReplaceAllString(g.StreamPrefix+"_"+resource.Resource, "_"))
		s, err := New(ctx, Config{
			JetStream: g.JetStream,
			Stream: StreamConfig{
				Name:         name,
				Subject:      g.SubjectPrefix + "." + resource.Resource,
				Replicas:     g.Replicas,
				History:      g.History,
				HistoryBytes: g.HistoryBytes,
			},
			MaxObjectBytes: g.MaxObjectBytes,
			Codec:          config.Codec,
			NewFunc:        newFunc,
			Prefix:         config.Prefix,
			ResourcePrefix: resourcePrefix,
			GroupResource:  config.GroupResource,
			Transformer:    config.Transformer,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("storage for %s: %w", resource, err)
		}
		g.mu.Lock()
		g.stores = append(g.stores, s)
		g.streams = append(g.streams, name)
		g.mu.Unlock()
		return s, s.Close, nil
	}
}
