#pragma once
// CIFAR-10 in its binary form (cifar-10-batches-bin): each record is 1 label byte then 3072 pixel bytes,
// the 1024 red values of the 32x32 image row by row, then the 1024 green, then the 1024 blue.
#include <cstdint>
#include <string>

#include "loaders/dataset.h"

namespace tl {

// data_batch_1.bin .. data_batch_5.bin (those present, in order) -> train, test_batch.bin -> test, val
// empty. `dir` may also be the folder that contains cifar-10-batches-bin/. Class names come from
// batches.meta.txt (one per line) when present, else CIFAR-10's ten names. Examples are in memory, named
// "<file>#<record>". limit_per_split > 0 keeps the first that many of each split. Errors name the file: a
// size that is not a whole number of records, a label over 9, no batch file at all.
DatasetSplits load_cifar10(const std::string& dir, int64_t limit_per_split = 0);

constexpr int kCifarSide = 32;
constexpr int64_t kCifarRecordBytes = 1 + 3 * kCifarSide * kCifarSide;  // 3073

}  // namespace tl
