#include "common/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace relay {

void Metrics::Describe(const std::string& name, const std::string& type, const std::string& help) {
  absl::MutexLock lock(&mu_);
  Family& family = families_[name];
  family.type = type;
  family.help = help;
}

std::string Metrics::LabelText(const MetricLabels& labels) {
  if (labels.empty()) return "";
  std::string text = "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    absl::StrAppend(&text, i ? "," : "", labels[i].first, "=\"",
                    absl::StrReplaceAll(labels[i].second, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}}),
                    "\"");
  }
  return text + "}";
}

void Metrics::Add(const std::string& name, const MetricLabels& labels, double delta) {
  absl::MutexLock lock(&mu_);
  families_[name].series[LabelText(labels)] += delta;
}

void Metrics::Set(const std::string& name, const MetricLabels& labels, double value) {
  absl::MutexLock lock(&mu_);
  families_[name].series[LabelText(labels)] = value;
}

void Metrics::Remove(const std::string& name, const MetricLabels& labels) {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it != families_.end()) it->second.series.erase(LabelText(labels));
}

double Metrics::Get(const std::string& name, const MetricLabels& labels) const {
  absl::MutexLock lock(&mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto series = it->second.series.find(LabelText(labels));
  return series == it->second.series.end() ? 0 : series->second;
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
