// A small C++ program for tests/e2e/test_symbolize.py: only its machine code and debug info
// matter (the test never runs it). Built with g++ -g -O1: shapes::scale, shapes::Circle::area
// and shapes::total stay out of line, shapes::detail::square is inlined into Circle::area, and
// the names need demangling with their parameter types.
#include <cstdio>

namespace shapes {

__attribute__((noinline, noipa)) double scale(double v, int times)
{
    double r = v;
    for (int i = 1; i < times; i++)
        r = r * 1.0001 + v;
    return r;
}

namespace detail {
inline __attribute__((always_inline)) double square(double v)
{
    double s = scale(v, 3);
    return s * v;
}
} // namespace detail

class Circle {
public:
    explicit Circle(double r) : radius_(r) {}
    __attribute__((noinline, noipa)) double area() const;

private:
    double radius_;
};

double Circle::area() const
{
    double sq = detail::square(radius_);
    return 3.14159265358979 * sq;
}

__attribute__((noinline, noipa)) double total(const Circle *circles, int n)
{
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += circles[i].area();
    return sum;
}

} // namespace shapes

int main(int argc, char **)
{
    shapes::Circle cs[3] = {shapes::Circle(1.0 * argc), shapes::Circle(2.0), shapes::Circle(3.5)};
    std::printf("%f\n", shapes::total(cs, 3));
    return 0;
}
