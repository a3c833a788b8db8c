#include "tensor_part.hpp"

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>

#include <executorch/extension/threadpool/threadpool_guard.h>
#include <executorch/runtime/platform/platform.h>

#include "error.hpp"

// The wheel ships the thread pool's library but not its header: the two members used here,
// declared as the library exports them (executorch 1.5.1).
namespace executorch::extension::threadpool {
class ThreadPool {
public:
    size_t get_thread_count() const;
    bool _unsafe_reset_threadpool(uint32_t n);
};
ThreadPool *get_threadpool();
}  // namespace executorch::extension::threadpool

namespace mmedge {

using executorch::extension::Module;
using EtError = executorch::runtime::Error;

namespace {

// ExecuTorch logs CPU probing and thread-pool resets at Info level on every load; errors and
// fatal messages still reach stderr (everything with MMEDGE_ET_LOG=1).
void et_log(et_timestamp_t, et_pal_log_level_t level, const char *file, const char *, size_t line, const char *message,
            size_t length) {
    static const bool all = std::getenv("MMEDGE_ET_LOG") != nullptr;
    if (all || level == kError || level == kFatal)
        std::fprintf(stderr, "executorch %c %s:%zu] %.*s\n", static_cast<char>(level), file, line, static_cast<int>(length), message);
}

void quiet_executorch_logs() {
    static std::once_flag once;
    std::call_once(once, [] { executorch::runtime::register_pal(executorch::runtime::PalImpl::create(et_log, __FILE__)); });
}

}  // namespace

struct TensorPart::Impl {
    std::unique_ptr<Module> module;
    std::string label;
    int64_t max_batch = 64;
    bool single_threaded = false;  // else it holds the pool from construction on (released by ~Impl)
    ~Impl();
};

namespace {
// One thread: XNNPACK runs without ExecuTorch's pool (a thread-local guard, around load and run
// alike, since XNNPACK takes its pool when a method loads). More threads: the process-wide pool,
// resized only while no loaded part holds it. `_unsafe_reset_threadpool` frees the old pool, and
// a method loaded on it would then run on freed memory (heap corruption, or the deadlock seen
// when the Python runtime shared the process). A part opened later with another count runs on
// the pool as it is. runtime/executorch_pool.py keeps the same rule for Python's parts.
std::mutex pool_mutex;
int parts_holding_pool = 0;

void hold_pool(int threads) {
    std::lock_guard<std::mutex> lock(pool_mutex);
    auto *pool = executorch::extension::threadpool::get_threadpool();
    if (parts_holding_pool == 0 && pool->get_thread_count() != static_cast<size_t>(threads))
        pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads));
    ++parts_holding_pool;
}

void release_pool() {
    std::lock_guard<std::mutex> lock(pool_mutex);
    --parts_holding_pool;
}
}  // namespace

TensorPart::TensorPart(const std::string &path, const PartSpec &spec, int threads) : impl_(new Impl) {
    quiet_executorch_logs();
    impl_->single_threaded = threads == 1;
    if (!impl_->single_threaded) hold_pool(threads);  // ~Impl releases it, also when loading below fails
    std::optional<executorch::extension::threadpool::NoThreadPoolGuard> guard;
    if (impl_->single_threaded) guard.emplace();
    impl_->label = spec.label;
    impl_->max_batch = spec.max_batch;
    impl_->module = std::make_unique<Module>(path, Module::LoadMode::Mmap);
    EtError err = impl_->module->load(executorch::runtime::Program::Verification::InternalConsistency);
    if (err != EtError::Ok)
        fail(MMEDGE_ERR_BACKEND, spec.label + ": ExecuTorch could not load " + spec.file + " (error " +
                                     std::to_string(static_cast<int>(err)) + "); the part is damaged: re-export the bundle");
    err = impl_->module->load_method("forward");
    if (err != EtError::Ok)
        fail(MMEDGE_ERR_BACKEND, spec.label + ": ExecuTorch could not prepare " + spec.file + "'s forward method (error " +
                                     std::to_string(static_cast<int>(err)) + "); re-export the bundle");
}

TensorPart::~TensorPart() = default;

TensorPart::Impl::~Impl() {
    module.reset();  // the method goes before the pool is let go
    if (!single_threaded) release_pool();
}

Tensor TensorPart::run(const Tensor &input) {
    if (input.shape.empty() || input.shape[0] < 1) fail(MMEDGE_ERR_INTERNAL, impl_->label + ": an empty input");
    if (input.shape[0] > impl_->max_batch) {
        // The program was exported for batches up to max_batch: run larger ones in slices.
        Tensor out;
        size_t per_item = input.data.size() / input.shape[0];
        for (int32_t start = 0; start < input.shape[0]; start += impl_->max_batch) {
            Tensor slice;
            slice.shape = input.shape;
            slice.shape[0] = std::min<int32_t>(impl_->max_batch, input.shape[0] - start);
            slice.data.assign(input.data.begin() + start * per_item, input.data.begin() + (start + slice.shape[0]) * per_item);
            Tensor part = run(slice);
            out.shape = part.shape;
            out.data.insert(out.data.end(), part.data.begin(), part.data.end());
        }
        out.shape[0] = input.shape[0];
        return out;
    }
    std::optional<executorch::extension::threadpool::NoThreadPoolGuard> guard;
    if (impl_->single_threaded) guard.emplace();
    std::vector<executorch::aten::SizesType> sizes(input.shape.begin(), input.shape.end());
    auto tensor = executorch::extension::from_blob(const_cast<float *>(input.data.data()), sizes,
                                                   executorch::aten::ScalarType::Float);
    auto result = impl_->module->forward(tensor);
    if (!result.ok())
        fail(MMEDGE_ERR_BACKEND, impl_->label + ": ExecuTorch failed to run (error " +
                                     std::to_string(static_cast<int>(result.error())) + ")");
    if (result->empty() || !(*result)[0].isTensor())
        fail(MMEDGE_ERR_BACKEND, impl_->label + ": the program returned no tensor; re-export the bundle");
    const auto &t = (*result)[0].toTensor();
    if (t.scalar_type() != executorch::aten::ScalarType::Float)
        fail(MMEDGE_ERR_BACKEND, impl_->label + ": the program returned a non-float32 tensor; re-export the bundle");
    Tensor out;
    out.shape.assign(t.sizes().begin(), t.sizes().end());
    const float *p = t.const_data_ptr<float>();
    out.data.assign(p, p + t.numel());  // a copy: the Module owns its output buffer
    return out;
}


}  // namespace mmedge
