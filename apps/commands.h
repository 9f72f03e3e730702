#pragma once
// Every tl subcommand: argv holds the arguments after the subcommand's name.
namespace tl::app {

int run_train_mnist(int argc, char** argv);
int run_info(int argc, char** argv);
int run_convert(int argc, char** argv);
int run_classify(int argc, char** argv);
int run_transfer(int argc, char** argv);
int run_predict(int argc, char** argv);
int run_bench(int argc, char** argv);

}  // namespace tl::app
