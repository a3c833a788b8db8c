#include "bundle.hpp"

#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>

#include "error.hpp"
#include "json.hpp"
#include "sha256.hpp"

namespace mmedge {

namespace {

using json::Kind;
using json::Value;

// The manifest's field readers: a missing or mistyped field names its path.
const Value &field(const Value &obj, const std::string &key, Kind kind, const std::string &where) {
    const Value *v = obj.find(key);
    if (!v) fail(MMEDGE_ERR_MANIFEST, where + "." + key + ": missing; the manifest is incomplete, re-export the bundle");
    if (v->kind != kind)
        fail(MMEDGE_ERR_MANIFEST, where + "." + key + ": expected " + json::kind_name(kind) + ", found " +
                                      json::kind_name(v->kind) + "; re-export the bundle");
    return *v;
}

const Value *optional(const Value &obj, const std::string &key, Kind kind, const std::string &where) {
    const Value *v = obj.find(key);
    if (!v || v->kind == Kind::Null) return nullptr;
    return &field(obj, key, kind, where);
}

int64_t integer(const Value &obj, const std::string &key, const std::string &where, int64_t lo, int64_t hi) {
    const Value &v = field(obj, key, Kind::Number, where);
    if (!v.is_integer || v.integer < lo || v.integer > hi)
        fail(MMEDGE_ERR_MANIFEST, where + "." + key + ": expected an integer in " + std::to_string(lo) + " .. " +
                                      std::to_string(hi) + "; re-export the bundle");
    return v.integer;
}

std::string text(const Value &obj, const std::string &key, const std::string &where) {
    return field(obj, key, Kind::String, where).string;
}

std::string read_small_file(const std::string &path, int64_t limit) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) fail(MMEDGE_ERR_IO, path + ": cannot be read");
    std::string data;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
        data.append(buf, n);
        if (static_cast<int64_t>(data.size()) > limit) {
            std::fclose(f);
            fail(MMEDGE_ERR_MANIFEST, path + ": larger than any manifest (" + std::to_string(limit) + " bytes); not a bundle");
        }
    }
    std::fclose(f);
    return data;
}

bool is_folder_kind(const std::string &kind) { return kind == "mlpackage"; }

std::string real_path(const std::string &path) {
    char buf[PATH_MAX];
    if (!realpath(path.c_str(), buf)) return "";
    return buf;
}

std::vector<std::string> components(const std::string &relative) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= relative.size()) {
        size_t slash = relative.find('/', start);
        if (slash == std::string::npos) slash = relative.size();
        std::string part = relative.substr(start, slash - start);
        if (!part.empty() && part != ".") out.push_back(part);
        start = slash + 1;
    }
    return out;
}

// As mmedge/bundle.py contained_path: relative, no "..", no link, resolving inside the bundle.
std::string contained_path(const std::string &root, const std::string &relative, const std::string &what) {
    if (relative.empty() || relative.find('\0') != std::string::npos)
        fail(MMEDGE_ERR_INTEGRITY, what + ": empty or NUL-containing path");
    auto parts = components(relative);
    if (parts.empty()) fail(MMEDGE_ERR_INTEGRITY, what + ": path '" + relative + "' names no file; parts must be files inside the bundle");
    bool escapes = relative[0] == '/' || relative[0] == '\\' || parts[0].find(':') != std::string::npos ||
                   std::find(parts.begin(), parts.end(), "..") != parts.end();
    if (escapes) fail(MMEDGE_ERR_INTEGRITY, what + ": path '" + relative + "' must be relative and stay inside the bundle");
    std::string candidate = root + "/" + relative;
    struct stat st;
    if (lstat(candidate.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
        fail(MMEDGE_ERR_INTEGRITY, what + ": '" + relative + "' is a symlink; bundles hold regular files only");
    std::string root_real = real_path(root), real = real_path(candidate);
    if (!real.empty() && real != root_real && real.compare(0, root_real.size() + 1, root_real + "/") != 0)
        fail(MMEDGE_ERR_INTEGRITY, what + ": '" + relative + "' resolves to " + real + ", outside the bundle " + root_real);
    return candidate;
}

void check_single_link(const std::string &path, const std::string &name, const std::string &label) {
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) fail(MMEDGE_ERR_IO, label + ": " + name + " cannot be read");
    if (st.st_nlink > 1)
        fail(MMEDGE_ERR_INTEGRITY, label + ": " + name + " has " + std::to_string(st.st_nlink) +
                                       " hard links; bundles hold files of their own (copy the bundle with `cp -r` or "
                                       "`rsync` without hard links)");
}

std::vector<std::string> list_folder(const std::string &folder, const std::string &what) {
    DIR *dir = opendir(folder.c_str());
    if (!dir) fail(MMEDGE_ERR_IO, what + ": " + folder + " cannot be listed");
    std::vector<std::string> names;
    while (dirent *e = readdir(dir)) {
        std::string name = e->d_name;
        if (name != "." && name != "..") names.push_back(name);
    }
    closedir(dir);
    return names;
}

// Every regular file under `folder` as (relative parts, path), in Python's sorted(rglob) order;
// a link anywhere is refused.
void tree_files(const std::string &folder, const std::vector<std::string> &prefix, const std::string &what,
                std::vector<std::pair<std::vector<std::string>, std::string>> &out) {
    for (const auto &name : list_folder(folder, what)) {
        std::string path = folder + "/" + name;
        std::vector<std::string> rel = prefix;
        rel.push_back(name);
        struct stat st;
        if (lstat(path.c_str(), &st) != 0) fail(MMEDGE_ERR_IO, what + ": " + path + " cannot be read");
        if (S_ISLNK(st.st_mode)) fail(MMEDGE_ERR_INTEGRITY, what + ": a symlink inside; bundles hold regular files only");
        if (S_ISDIR(st.st_mode)) tree_files(path, rel, what, out);
        else if (S_ISREG(st.st_mode)) out.emplace_back(rel, path);
    }
    std::sort(out.begin(), out.end());
}

std::string join(const std::vector<std::string> &parts) {
    std::string s;
    for (size_t i = 0; i < parts.size(); ++i) s += (i ? "/" : "") + parts[i];
    return s;
}

const char *const kModelSuffixes[] = {".gguf", ".onnx", ".ort", ".pte", ".ptd", ".mlmodel", ".mlpackage", ".safetensors",
                                      ".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".data", ".onnx_data", ".npy",
                                      ".npz", ".tflite", ".weights"};

bool looks_like_a_model(std::string name) {
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    for (const char *suffix : kModelSuffixes) {
        std::string s = suffix;
        if (name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
    }
    return name.find(".onnx.") != std::string::npos;
}

void check_nothing_unlisted(const std::string &root, const std::string &folder, const std::string &rel_prefix,
                            const std::set<std::string> &listed, const std::set<std::string> &folders) {
    for (const auto &name : list_folder(folder, "the bundle")) {
        std::string rel = rel_prefix.empty() ? name : rel_prefix + "/" + name;
        std::string path = folder + "/" + name;
        struct stat st;
        if (lstat(path.c_str(), &st) != 0) continue;  // gone while listing: nothing to parse
        if (S_ISLNK(st.st_mode)) fail(MMEDGE_ERR_INTEGRITY, rel + " is a symlink inside the bundle; bundles hold regular files only");
        if (S_ISDIR(st.st_mode)) {
            if (!folders.count(rel)) check_nothing_unlisted(root, path, rel, listed, folders);
            continue;
        }
        if (!listed.count(rel) && rel != "manifest.json" && looks_like_a_model(name))
            fail(MMEDGE_ERR_INTEGRITY, rel + " is in the bundle but not in its manifest; every model file of a bundle is "
                                             "listed and hashed: remove it, or re-export the bundle");
    }
}

PartSpec read_part(const Value &d, const std::string &role, const std::string &label) {
    if (d.kind != Kind::Object) fail(MMEDGE_ERR_MANIFEST, label + ": expected an object; re-export the bundle");
    PartSpec p;
    p.label = label;
    p.role = role;
    p.file = text(d, "file", label);
    p.kind = text(d, "kind", label);
    p.precision = text(d, "precision", label);
    p.sha256 = text(d, "sha256", label);
    bool hex = p.sha256.size() == 64 &&
               std::all_of(p.sha256.begin(), p.sha256.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
    if (!hex) fail(MMEDGE_ERR_MANIFEST, label + ".sha256: expected 64 lowercase hex digits");
    p.size_bytes = integer(d, "size_bytes", label, 0, INT64_MAX);
    if (const Value *details = optional(d, "details", Kind::Object, label)) {
        if (details->find("max_batch")) p.max_batch = integer(*details, "max_batch", label + ".details", 1, 1 << 20);
    }
    return p;
}

void read_sections(const Value &m, Bundle &b) {
    b.family = text(m, "family", "manifest");
    if (m.find("audio") && m.find("audio")->kind != Kind::Null) b.modality = "audio";  // as Manifest.modality

    const Value &parts = field(m, "parts", Kind::Object, "manifest");
    for (const auto &[role, part] : parts.object) b.parts.push_back(read_part(part, role, "parts." + role));
    if (const Value *alts = optional(m, "alternatives", Kind::Object, "manifest")) {
        for (const auto &[role, items] : alts->object) {
            if (items.kind != Kind::Array) fail(MMEDGE_ERR_MANIFEST, "alternatives." + role + ": expected an array");
            for (size_t i = 0; i < items.array.size(); ++i)
                b.parts.push_back(read_part(items.array[i], role, "alternatives." + role + "[" + std::to_string(i) + "]"));
        }
    }
    if (!parts.find("llm")) fail(MMEDGE_ERR_MANIFEST, "parts.llm: missing; re-export the bundle");

    if (b.modality != "image") return;  // the rest is refused in select_runnable, with the reason
    const Value &image = field(m, "image", Kind::Object, "manifest");
    ImageSlot &s = b.slot;
    s.marker = text(image, "marker", "image");
    if (s.marker.empty()) fail(MMEDGE_ERR_MANIFEST, "image.marker: empty; re-export the bundle");
    s.marker_token_id = static_cast<int32_t>(integer(image, "marker_token_id", "image", 0, INT32_MAX));
    s.tokens_per_image = static_cast<int32_t>(integer(image, "tokens_per_image", "image", 1, 1 << 20));
    s.embedding_dim = static_cast<int32_t>(integer(image, "embedding_dim", "image", 1, 1 << 20));
    if (const Value *a = optional(image, "attention", Kind::String, "image")) s.attention = a->string;
    if (const Value *layout = optional(image, "layout", Kind::Object, "image")) {
        s.layout = text(*layout, "kind", "image.layout");
        if (s.layout == "single-wrapped") {
            s.image_token = text(*layout, "image_token", "image.layout");
            s.before = text(*layout, "before", "image.layout");
            s.after = text(*layout, "after", "image.layout");
            if (s.image_token.empty()) fail(MMEDGE_ERR_MANIFEST, "image.layout.image_token: empty; re-export the bundle");
        }
    }
    if (const Value *d = optional(image, "embedding_divisor", Kind::Number, "image")) s.embedding_divisor = d->number;
    if (!(s.embedding_divisor > 0)) fail(MMEDGE_ERR_MANIFEST, "image.embedding_divisor: expected a positive number");

    const Value &pre = field(field(m, "preprocess", Kind::Object, "manifest"), "image", Kind::Object, "preprocess");
    ImagePreprocess &p = b.preprocess;
    const std::string where = "preprocess.image";
    p.resize_mode = text(pre, "resize_mode", where);
    const Value &size = field(pre, "size", Kind::Object, where);
    if (p.resize_mode == "shortest_edge") {
        p.shortest_edge = static_cast<int>(integer(size, "shortest_edge", where + ".size", 1, 1 << 14));
    } else if (p.resize_mode == "exact") {
        p.height = static_cast<int>(integer(size, "height", where + ".size", 1, 1 << 14));
        p.width = static_cast<int>(integer(size, "width", where + ".size", 1, 1 << 14));
    } else {
        fail(MMEDGE_ERR_MANIFEST, where + ".resize_mode: expected 'shortest_edge' or 'exact', found '" + p.resize_mode + "'");
    }
    p.resample = text(pre, "resample", where);
    if (const Value *crop = optional(pre, "crop_size", Kind::Object, where)) {
        p.crop = true;
        p.crop_height = static_cast<int>(integer(*crop, "height", where + ".crop_size", 1, 1 << 14));
        p.crop_width = static_cast<int>(integer(*crop, "width", where + ".crop_size", 1, 1 << 14));
    }
    if (const Value *r = optional(pre, "rescale_factor", Kind::Number, where)) {
        p.rescale = true;
        p.rescale_factor = r->number;
    }
    const Value *mean = optional(pre, "image_mean", Kind::Array, where), *std_ = optional(pre, "image_std", Kind::Array, where);
    if (mean && std_) {
        if (mean->array.size() != 3 || std_->array.size() != 3)
            fail(MMEDGE_ERR_MANIFEST, where + ": image_mean and image_std need 3 numbers each");
        for (int c = 0; c < 3; ++c) {
            if (mean->array[c].kind != Kind::Number || std_->array[c].kind != Kind::Number || std_->array[c].number == 0)
                fail(MMEDGE_ERR_MANIFEST, where + ": image_mean / image_std must be numbers, std nonzero");
            p.mean[c] = static_cast<float>(mean->array[c].number);
            p.std[c] = static_cast<float>(std_->array[c].number);
        }
        p.normalize = true;
    }
    if (const Value *layout = optional(pre, "layout", Kind::String, where); layout && layout->string != "NCHW")
        fail(MMEDGE_ERR_UNSUPPORTED, where + ".layout: the native runtime feeds NCHW pixels, the bundle says " + layout->string);

    const Value &prompt = field(m, "prompt", Kind::Object, "manifest");
    PromptFrame &f = b.prompt;
    if (const Value *v = optional(prompt, "add_bos", Kind::Bool, "prompt")) f.add_bos = v->boolean;
    if (const Value *v = optional(prompt, "prepend_space", Kind::Bool, "prompt")) f.prepend_space = v->boolean;
    if (prompt.find("first_position")) f.first_position = static_cast<int32_t>(integer(prompt, "first_position", "prompt", 0, 1 << 20));
    if (const Value *turn = optional(prompt, "single_turn", Kind::Object, "prompt")) {
        f.present = true;
        f.before = text(*turn, "before", "prompt.single_turn");
        f.after = text(*turn, "after", "prompt.single_turn");
        if (const Value *img = optional(*turn, "image", Kind::String, "prompt.single_turn")) {
            f.places_images = true;
            f.image = img->string;
        }
        if (const Value *strip = optional(*turn, "strip", Kind::Bool, "prompt.single_turn")) f.strip = strip->boolean;
    }
}

// The parts the native runtime runs: the first ExecuTorch candidate per tensor role, the GGUF LLM.
void select_runnable(Bundle &b) {
    if (b.modality != "image")
        fail(MMEDGE_ERR_UNSUPPORTED, "manifest.modality: the native runtime runs image bundles; this one is " + b.modality);
    if (b.slot.layout != "single" && b.slot.layout != "single-wrapped")
        fail(MMEDGE_ERR_UNSUPPORTED, "image.layout.kind: the native runtime runs one view per image ('single', LLaVA-style, "
                                     "and 'single-wrapped', Gemma 3); this bundle's is '" + b.slot.layout + "': use the Python runtime");
    if (b.slot.attention != "causal" && b.slot.attention != "bidirectional-image")
        fail(MMEDGE_ERR_UNSUPPORTED, "image.attention: the native runtime decodes images causally or each image run both ways "
                                     "('bidirectional-image'); this bundle needs '" + b.slot.attention + "': use the Python runtime");
    for (const char *role : {"vision_encoder", "projector"}) {
        const PartSpec *chosen = nullptr;
        std::string kinds;
        for (const auto &p : b.parts) {
            if (p.role != role) continue;
            kinds += (kinds.empty() ? "" : ", ") + p.kind;
            if (p.kind == "pte" && !chosen) chosen = &p;
        }
        if (!chosen)
            fail(MMEDGE_ERR_UNSUPPORTED, std::string("parts.") + role + ": the native runtime runs ExecuTorch (.pte) parts; this "
                                         "bundle has " + (kinds.empty() ? "none" : kinds) +
                                         ": export with --target executorch (ONNX needs ONNX Runtime, which native does not link)");
        (std::string(role) == "vision_encoder" ? b.encoder : b.projector) = *chosen;
    }
    for (const auto &p : b.parts)
        if (p.role == "llm") b.llm = p;
    if (b.llm.kind != "gguf") fail(MMEDGE_ERR_MANIFEST, "parts.llm.kind: expected 'gguf'");
}

}  // namespace

Bundle open_bundle(const std::string &dir, bool check_hashes) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
        fail(MMEDGE_ERR_MANIFEST, dir + ": not a folder; expected a bundle folder written by `mmedge export`");
    Bundle b;
    b.root = dir;
    std::string manifest_path = dir + "/manifest.json";
    if (lstat(manifest_path.c_str(), &st) != 0)
        fail(MMEDGE_ERR_MANIFEST, manifest_path + ": missing; " + dir + " is not an mmedge bundle (or its export was interrupted)");
    if (S_ISLNK(st.st_mode)) fail(MMEDGE_ERR_INTEGRITY, manifest_path + ": is a symlink; bundles hold regular files only");
    if (!S_ISREG(st.st_mode)) fail(MMEDGE_ERR_MANIFEST, manifest_path + ": not a regular file");
    if (st.st_size > kMaxManifestBytes)
        fail(MMEDGE_ERR_MANIFEST, manifest_path + ": " + std::to_string(st.st_size) + " bytes, larger than any manifest; not a bundle");
    json::Value m = json::parse(read_small_file(manifest_path, kMaxManifestBytes), manifest_path);
    if (m.kind != Kind::Object) fail(MMEDGE_ERR_MANIFEST, manifest_path + ": expected a JSON object");
    std::string format = text(m, "format", "manifest");
    if (format != kFormatName)
        fail(MMEDGE_ERR_MANIFEST, "manifest.format: expected '" + std::string(kFormatName) + "', found '" + format +
                                      "'; this folder is not an mmedge bundle");
    int64_t version = integer(m, "format_version", "manifest", INT64_MIN, INT64_MAX);
    if (version != kFormatVersion)
        fail(MMEDGE_ERR_VERSION, "manifest.format_version: this runtime reads version " + std::to_string(kFormatVersion) +
                                     ", the bundle is version " + std::to_string(version) + "; use a matching mmedge");
    read_sections(m, b);

    std::set<std::string> listed, folders;
    for (const auto &p : b.parts) {
        std::string path = contained_path(dir, p.file, p.label + ".file");
        std::string rel = join(components(p.file));
        struct stat ps;
        bool folder = is_folder_kind(p.kind);
        if (stat(path.c_str(), &ps) != 0 || (folder ? !S_ISDIR(ps.st_mode) : !S_ISREG(ps.st_mode)))
            fail(MMEDGE_ERR_INTEGRITY, p.label + ": " + (folder ? "folder" : "file") + " '" + p.file +
                                           "' is missing from the bundle; re-export it");
        int64_t size = 0;
        std::vector<std::pair<std::vector<std::string>, std::string>> files;
        if (folder) {
            tree_files(path, {}, p.label, files);
            folders.insert(rel);
        } else {
            files.push_back({{}, path});
            listed.insert(rel);
        }
        for (const auto &[parts, file] : files) {
            check_single_link(file, parts.empty() ? p.file : join(parts), p.label);
            struct stat fs;
            stat(file.c_str(), &fs);
            size += fs.st_size;
        }
        if (size != p.size_bytes)
            fail(MMEDGE_ERR_INTEGRITY, p.label + ": " + p.file + " is " + std::to_string(size) + " bytes, the manifest says " +
                                           std::to_string(p.size_bytes) + "; the file was truncated or replaced, re-export the bundle");
        if (!check_hashes) continue;
        std::string digest;
        if (folder) {
            Sha256 h;
            for (const auto &[parts, file] : files) {
                std::string line = join(parts) + std::string(1, '\0') + sha256_file(file) + "\n";
                h.update(reinterpret_cast<const uint8_t *>(line.data()), line.size());
            }
            digest = h.hex_digest();
        } else {
            digest = sha256_file(path);
        }
        if (digest != p.sha256)
            fail(MMEDGE_ERR_INTEGRITY, p.label + ": sha256 of " + p.file + " is " + digest.substr(0, 16) + "..., the manifest says " +
                                           p.sha256.substr(0, 16) + "...; the file was modified or corrupted, re-export the bundle");
    }
    check_nothing_unlisted(dir, dir, "", listed, folders);
    select_runnable(b);
    return b;
}

}  // namespace mmedge
