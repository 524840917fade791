#include "common/metrics.h"

#include <cstdlib>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace relay {

std::string MetricFamily::SeriesKey(const std::vector<std::string>& label_values) const {
  if (label_values.size() != label_names_.size()) {
    // A programming error that tests catch: the call does not match the declaration.
    std::fprintf(stderr, "metric %s takes labels {%s}, got %zu value(s)\n", name_.c_str(),
                 absl::StrJoin(label_names_, ",").c_str(), label_values.size());
    std::abort();
  }
  if (label_names_.empty()) return "";
  std::string text = "{";
  for (size_t i = 0; i < label_names_.size(); ++i) {
    absl::StrAppend(&text, i ? "," : "", label_names_[i], "=\"",
                    absl::StrReplaceAll(label_values[i], {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}}), "\"");
  }
  return text + "}";
}

void MetricFamily::Update(const std::vector<std::string>& label_values, double value, bool add) {
  std::string key = SeriesKey(label_values);
  absl::MutexLock lock(&registry_->mu_);
  double& series = registry_->families_[name_].series[key];
  series = add ? series + value : value;
}

void MetricFamily::Remove(const std::vector<std::string>& label_values) {
  std::string key = SeriesKey(label_values);
  absl::MutexLock lock(&registry_->mu_);
  registry_->families_[name_].series.erase(key);
}

double MetricFamily::Value(const std::vector<std::string>& label_values) const {
  std::string key = SeriesKey(label_values);
  absl::MutexLock lock(&registry_->mu_);
  const auto& series = registry_->families_[name_].series;
  auto it = series.find(key);
  return it == series.end() ? 0 : it->second;
}

template <typename T>
T& Metrics::Declare(const std::string& name, const std::string& type, const std::string& help,
                    std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  auto existing = handles_.find(name);
  if (existing != handles_.end()) return static_cast<T&>(*existing->second);
  Family& family = families_[name];
  family.type = type;
  family.help = help;
  owned_.push_back(std::unique_ptr<MetricFamily>(new T(this, name, std::move(label_names))));
  handles_[name] = owned_.back().get();
  return static_cast<T&>(*owned_.back());
}

Counter& Metrics::AddCounter(const std::string& name, const std::string& help,
                             std::vector<std::string> label_names) {
  return Declare<Counter>(name, "counter", help, std::move(label_names));
}

Gauge& Metrics::AddGauge(const std::string& name, const std::string& help, std::vector<std::string> label_names) {
  return Declare<Gauge>(name, "gauge", help, std::move(label_names));
}

std::string Metrics::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [name, family] : families_) {
    if (!family.help.empty()) absl::StrAppend(&out, "# HELP ", name, " ", family.help, "\n");
    if (!family.type.empty()) absl::StrAppend(&out, "# TYPE ", name, " ", family.type, "\n");
    for (const auto& [labels, value] : family.series) {
      absl::StrAppend(&out, name, labels, " ", absl::StrFormat("%.15g", value), "\n");
    }
  }
  return out;
}

}  // namespace relay
