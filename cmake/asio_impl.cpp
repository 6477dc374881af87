// The single translation unit that compiles Boost.Asio and Boost.Beast (separate compilation).
// Everything else includes their headers only, which keeps rebuilds on two cores bearable.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
