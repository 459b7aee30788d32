"""The `srnn` command and `python -m srnn`: a Ctrl-C while the libraries load ends in one line too."""
import sys


def main():
    try:
        from srnn.cli import main as run  # numpy, numba, autograd, matplotlib: seconds of imports
    except KeyboardInterrupt:
        print("srnn: interrupted", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
