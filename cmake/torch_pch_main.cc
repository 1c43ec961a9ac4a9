// Links the executable flavour of the precompiled-header target (see CMakeLists.txt).
int main() { return 0; }
